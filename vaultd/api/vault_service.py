"""VaultService: requests -> validated store commands through the replicated log; reads after a barrier.

Input is validated with the store's own validators before proposing, so a bad name or an oversize value
costs no log entry; apply checks again (the log is the authority). Gets, puts, deletes and scans are
recorded in the node-local access statistics; gets and scans are timed into the store latency histograms.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from vaultd.api import auth, convert, errors, targets
from vaultd.api.base import MAX_SEND_BYTES, ServicerBase, server_stream, unary
from vaultd.api.stats import StatsFanout
from vaultd.observability import metrics
from vaultd.store import commands as cmd
from vaultd.store import parse_import, validation
from vaultd.v1 import vault_pb2, vault_pb2_grpc

# An import is parsed on the receiving node, so its whole file is held in memory: bound it.
MAX_IMPORT_BYTES = 64 * 1024 * 1024
# An import's first message (its header, which authorization needs) must arrive within this long.
IMPORT_HEADER_SECONDS = 10.0
# RESOURCE_EXHAUSTED reason for an export or import beyond cfg.max_concurrent_streams.
TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
# Entries per ImportChunk log entry stay well under pysyncobj's ~1 MiB practical entry ceiling.
IMPORT_CHUNK_BYTES = 512 * 1024
_IMPORT_FORMATS = {
    vault_pb2.IMPORT_FORMAT_UNSPECIFIED: "native",
    vault_pb2.IMPORT_FORMAT_NATIVE: "native",
    vault_pb2.IMPORT_FORMAT_FLAT_JSON: "flat_json",
    vault_pb2.IMPORT_FORMAT_DOTENV: "dotenv",
}
_IMPORT_MODES = {
    vault_pb2.IMPORT_MODE_UNSPECIFIED: cmd.ImportMode.FAIL_IF_EXISTS,
    vault_pb2.IMPORT_MODE_FAIL_IF_EXISTS: cmd.ImportMode.FAIL_IF_EXISTS,
    vault_pb2.IMPORT_MODE_OVERWRITE: cmd.ImportMode.OVERWRITE,
    vault_pb2.IMPORT_MODE_SKIP_EXISTING: cmd.ImportMode.SKIP_EXISTING,
}
_UPDATE_PATHS = frozenset({"description", "owner", "tags"})
# Room per scan entry beside key and value: timestamps, version, revision and protobuf framing.
_ENTRY_OVERHEAD_BYTES = 128
# A scan page is one response message; the next page token and the message framing need a little room.
_SCAN_PAGE_BYTES = MAX_SEND_BYTES - 64 * 1024


def _scan_page_size(requested: int, keys_only: bool, max_value_size: int) -> int:
    """The page size to ask the store for, so that a page of values always fits in one response.

    Without this, max_scan_results (1000) entries of up to max_value_size (1 MiB) each would be read into
    memory and then refused by grpc's send limit: a vault holding large values could never be scanned. A
    keys-only page counts keys alone (only a max_scan_results above ~58,000 is capped); a negative size is
    left for the store to reject.
    """
    if requested < 0:
        return requested
    value_bytes = 0 if keys_only else max_value_size
    cap = max(1, _SCAN_PAGE_BYTES // (value_bytes + validation.MAX_KEY_BYTES + _ENTRY_OVERHEAD_BYTES))
    return min(requested, cap) if requested else cap


def _expected(request: Any) -> int | None:
    if not request.HasField("expected_version"):
        return None
    return validation.validate_expected_version(request.expected_version)


class StreamSlot:
    """One export or import stream holding a slot; the timer ends it after `stream_max_seconds`.

    Why a timer that cancels the call, not a check between messages: a stalled client blocks the handler
    inside grpcio (an export's send waits for flow-control window the client never grants; an import's
    next() waits for a message that never comes), so only cancelling the call from another thread releases
    the worker. The call is cancelled with DEADLINE_EXCEEDED through grpcio's core call object (the public
    `context.cancel()` can only say CANCELLED, and is the fallback should that object move).
    """

    def __init__(self, context: grpc.ServicerContext, max_seconds: float,
                 what: str = "the stream ran longer than this node's limit (stream_max_seconds)") -> None:
        self.max_seconds = max_seconds
        self.what = what
        self.expired = False
        self._context = context
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(max_seconds, self._expire)
        self._timer.daemon = True
        self._timer.name = "vaultd-stream-limit"
        self._timer.start()

    def finish(self) -> bool:
        """The transfer is over (export sent, import received): the time limit no longer applies. False when
        the limit struck first; the call is then cancelled and must not go on (an import must not propose)."""
        with self._lock:
            self._done = True
            in_time = not self.expired
        self._timer.cancel()
        return in_time

    def error(self) -> errors.ApiError:
        return errors.ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", self._message(),
                               {"max_seconds": f"{self.max_seconds:g}"})

    def _message(self) -> str:
        return f"{self.what}: {self.max_seconds:g} s"

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
        # Set first, so the metrics and the audit log record DEADLINE_EXCEEDED rather than CANCELLED.
        self._context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
        self._context.set_details(self._message())
        call = getattr(getattr(self._context, "_rpc_event", None), "call", None)
        try:
            call.cancel(grpc.StatusCode.DEADLINE_EXCEEDED.value[0], self._message())
        except Exception:  # noqa: BLE001 - grpcio moved its internals: end the call the public way
            self._context.cancel()


class StreamLimiter:
    """At most `max_streams` export/import streams in flight on this node, each ended after `max_seconds`.

    A stream can hold a worker thread for as long as its client likes (reading an export slowly, or not at
    all; sending an import slowly). Without a bound, cfg.grpc_workers such streams starve every other RPC.
    Beyond the bound a stream is refused at once with RESOURCE_EXHAUSTED / TOO_MANY_STREAMS.
    """

    def __init__(self, max_streams: int, max_seconds: float) -> None:
        self.max_streams = max_streams
        self.max_seconds = max_seconds
        self._slots = threading.BoundedSemaphore(max_streams)

    @contextmanager
    def slot(self, context: grpc.ServicerContext) -> Iterator[StreamSlot]:
        if not self._slots.acquire(blocking=False):
            raise errors.ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, TOO_MANY_STREAMS,
                f"this node already serves {self.max_streams} export/import streams (max_concurrent_streams); "
                "retry later", {"max": str(self.max_streams)})
        stream = StreamSlot(context, self.max_seconds)
        try:
            yield stream
        finally:
            stream.finish()
            self._slots.release()


class VaultServicer(ServicerBase, vault_pb2_grpc.VaultServiceServicer):
    def __init__(self, node: Any, machine: Any, stats: Any, cfg: Any, fanout: StatsFanout) -> None:
        super().__init__(node, machine, stats, cfg)
        self.fanout = fanout
        self.streams = StreamLimiter(cfg.max_concurrent_streams, cfg.stream_max_seconds)

    def _record(self, vault: str, key: str, op: str, started: float) -> None:
        if self.stats is not None:
            self.stats.record(vault, key, op, time.perf_counter() - started)

    # --- vaults ---
    @unary
    def CreateVault(self, request: vault_pb2.CreateVaultRequest, context: grpc.ServicerContext) -> vault_pb2.Vault:
        command = cmd.CreateVault(
            name=validation.validate_vault_name(request.name),
            description=validation.validate_text(request.description, "description",
                                                 validation.MAX_DESCRIPTION_CHARS),
            owner=validation.validate_text(request.owner, "owner", validation.MAX_OWNER_CHARS),
            tags=validation.validate_tags(list(request.tags)))
        return convert.vault(self.submit(context, request.request_id, command))

    @unary
    def GetVault(self, request: vault_pb2.GetVaultRequest, context: grpc.ServicerContext) -> vault_pb2.Vault:
        name = validation.validate_vault_name(request.name)
        return convert.vault(self.reader(context, request.consistency).get_vault(name))

    @unary
    def UpdateVault(self, request: vault_pb2.UpdateVaultRequest, context: grpc.ServicerContext) -> vault_pb2.Vault:
        paths = set(request.update_mask.paths) or set(_UPDATE_PATHS)
        unknown = paths - _UPDATE_PATHS
        if unknown:
            raise errors.invalid_argument("update_mask may name only description, owner and tags",
                                          field="update_mask")
        command = cmd.UpdateVault(
            name=validation.validate_vault_name(request.name),
            description=(validation.validate_text(request.description, "description",
                                                  validation.MAX_DESCRIPTION_CHARS)
                         if "description" in paths else None),
            owner=(validation.validate_text(request.owner, "owner", validation.MAX_OWNER_CHARS)
                   if "owner" in paths else None),
            tags=validation.validate_tags(list(request.tags)) if "tags" in paths else None)
        return convert.vault(self.submit(context, request.request_id, command))

    @unary
    def ListVaults(self, request: vault_pb2.ListVaultsRequest,
                   context: grpc.ServicerContext) -> vault_pb2.ListVaultsResponse:
        """Only the vaults the token may `list`, in full pages; the page token names the last vault shown."""
        vaults, token = self.reader(context, request.consistency).list_vaults(
            request.page_size, request.page_token, visible=lambda name: auth.allows(targets.LIST, name))
        return vault_pb2.ListVaultsResponse(vaults=[convert.vault(v) for v in vaults], next_page_token=token or "")

    @unary
    def DeleteVault(self, request: vault_pb2.DeleteVaultRequest,
                    context: grpc.ServicerContext) -> vault_pb2.DeleteVaultResponse:
        command = cmd.DeleteVault(validation.validate_vault_name(request.name))
        return vault_pb2.DeleteVaultResponse(
            deleted_keys=self.submit(context, request.request_id, command).deleted_keys)

    @unary
    def CopyVault(self, request: vault_pb2.CopyVaultRequest,
                  context: grpc.ServicerContext) -> vault_pb2.CopyVaultResponse:
        command = cmd.CopyVault(validation.validate_vault_name(request.source),
                                validation.validate_vault_name(request.destination))
        return vault_pb2.CopyVaultResponse(
            copied_keys=self.submit(context, request.request_id, command).copied_keys)

    # --- keys ---
    @unary
    def Put(self, request: vault_pb2.PutRequest, context: grpc.ServicerContext) -> vault_pb2.PutResponse:
        started = time.perf_counter()
        vault = validation.validate_vault_name(request.vault)
        key = validation.validate_key(request.key)
        command = cmd.Put(vault, key, validation.validate_value(request.value, self.limits().max_value_size, key),
                          _expected(request))
        result = self.submit(context, request.request_id, command)
        self._record(vault, key, "put", started)
        return vault_pb2.PutResponse(version=result.version, revision=result.revision)

    @unary
    def Get(self, request: vault_pb2.GetRequest, context: grpc.ServicerContext) -> vault_pb2.Entry:
        vault = validation.validate_vault_name(request.vault)
        key = validation.validate_key(request.key)
        reader = self.reader(context, request.consistency)
        started = time.perf_counter()
        entry = reader.get(vault, key)
        elapsed = time.perf_counter() - started
        metrics.store_get_seconds.observe(elapsed)
        if self.stats is not None:
            self.stats.record(vault, key, "get", elapsed)
        return convert.entry(entry)

    @unary
    def Delete(self, request: vault_pb2.DeleteRequest, context: grpc.ServicerContext) -> vault_pb2.DeleteResponse:
        started = time.perf_counter()
        vault = validation.validate_vault_name(request.vault)
        key = validation.validate_key(request.key)
        result = self.submit(context, request.request_id, cmd.Delete(vault, key, _expected(request)))
        self._record(vault, key, "delete", started)
        return vault_pb2.DeleteResponse(deleted=result.deleted)

    @unary
    def Scan(self, request: vault_pb2.ScanRequest, context: grpc.ServicerContext) -> vault_pb2.ScanResponse:
        vault = validation.validate_vault_name(request.vault)
        prefix = validation.validate_prefix(request.prefix)
        page_size = _scan_page_size(request.page_size, request.keys_only, self.limits().max_value_size)
        reader = self.reader(context, request.consistency)
        started = time.perf_counter()
        entries, token = reader.scan(vault, prefix, page_size, request.page_token, request.keys_only)
        elapsed = time.perf_counter() - started
        metrics.store_scan_seconds.observe(elapsed)
        if self.stats is not None:
            self.stats.record(vault, "", "scan", elapsed)  # "" = a vault-level operation, not a key
        return vault_pb2.ScanResponse(entries=[convert.entry(e) for e in entries], next_page_token=token or "")

    @unary
    def Txn(self, request: vault_pb2.TxnRequest, context: grpc.ServicerContext) -> vault_pb2.TxnResponse:
        started = time.perf_counter()
        vault = validation.validate_vault_name(request.vault)
        if not request.ops:
            raise errors.invalid_argument("a transaction needs at least one op", field="ops")
        max_value = self.limits().max_value_size
        ops: list[cmd.TxnOp] = []
        for i, op in enumerate(request.ops):
            kind = op.WhichOneof("op")
            if kind is None:
                raise errors.invalid_argument(f"op {i} is neither put nor delete", field=f"ops[{i}]")
            body = getattr(op, kind)
            key = validation.validate_key(body.key)
            expected = _expected(body)
            if kind == "put":
                ops.append(cmd.TxnPut(key, validation.validate_value(body.value, max_value, key), expected))
            else:
                ops.append(cmd.TxnDelete(key, expected))
        result = self.submit(context, request.request_id, cmd.Txn(vault, tuple(ops)))
        for op_cmd in ops:
            self._record(vault, op_cmd.key, "put" if isinstance(op_cmd, cmd.TxnPut) else "delete", started)
        return convert.txn_response(result)

    # --- export / import ---
    @server_stream
    def ExportVault(self, request: vault_pb2.ExportVaultRequest,
                    context: grpc.ServicerContext) -> Iterator[vault_pb2.ExportChunk]:
        name = validation.validate_vault_name(request.name)
        with self.streams.slot(context) as stream:
            started = time.perf_counter()
            for piece in self.reader(context, request.consistency).export(name):
                yield vault_pb2.ExportChunk(data=piece)
            stream.finish()
            self._record(name, "", "export", started)

    @unary
    def ImportVault(self, request_iterator: Iterator[vault_pb2.ImportChunk],
                    context: grpc.ServicerContext) -> vault_pb2.ImportVaultResponse:
        # The header first, without a slot: the caller's `import` capability is checked when the header
        # arrives (api/auth.py), so a token that may not import cannot hold the node's stream slots. A client
        # that never sends one is ended after IMPORT_HEADER_SECONDS.
        waiting = StreamSlot(context, min(IMPORT_HEADER_SECONDS, self.streams.max_seconds),
                             "no import header arrived within this node's limit")
        try:
            first = next(request_iterator, None)
        except grpc.RpcError:
            if waiting.expired:
                raise waiting.error() from None
            raise
        if not waiting.finish():
            raise waiting.error()
        with self.streams.slot(context) as stream:
            try:
                header, fmt, mode, data = _receive_import(itertools.chain([first], request_iterator), context)
            except (grpc.RpcError, errors.ApiError):
                # The time limit cancelled the call while we waited for the client: the request stream then
                # raises, or grpcio ends it like a clean end and the upload looks short (MALFORMED_IMPORT).
                if stream.expired:
                    raise stream.error() from None
                raise
            # Also when grpcio ended the cancelled call's request stream like a clean end. Once finished in
            # time, proposing is bounded by the call's own deadline, never cut by this limit.
            if not stream.finish():
                raise stream.error()
            raw = bytes(data)
            del data  # gone before parsing makes its own copies: the upload is not held twice over
            entries = parse_import(raw, fmt)
            del raw
            max_value = self.limits().max_value_size
            for entry in entries:
                validation.validate_key(entry.key)
                validation.validate_value(entry.value, max_value, entry.key)
            result = self._import(context, header.request_id or str(uuid.uuid4()), header.vault, mode, entries)
        return vault_pb2.ImportVaultResponse(imported=result.imported, skipped=result.skipped,
                                             overwritten=result.overwritten)

    def _import(self, context: grpc.ServicerContext, request_id: str, vault: str, mode: cmd.ImportMode,
                entries: list[cmd.ImportEntry]) -> Any:
        """One Import entry when it fits, else ImportBegin / ImportChunk... / ImportCommit.

        Each step has its own request id derived from the call's, so a retried import replays finished
        steps from the dedup table and the commit checks that every chunk was staged.
        """
        chunks = _split(entries)
        if len(chunks) <= 1:
            return self.submit(context, request_id, cmd.Import(vault, mode, tuple(chunks[0] if chunks else ())))
        import_id = self.scoped(request_id)   # staged imports of different principals never meet
        self.submit(context, f"{request_id}/begin", cmd.ImportBegin(import_id, vault, mode))
        for seq, part in enumerate(chunks):
            self.submit(context, f"{request_id}/chunk/{seq}", cmd.ImportChunk(import_id, tuple(part), seq))
        return self.submit(context, f"{request_id}/commit", cmd.ImportCommit(import_id, len(chunks)))

    # --- stats ---
    @unary
    def GetVaultStats(self, request: vault_pb2.GetVaultStatsRequest,
                      context: grpc.ServicerContext) -> vault_pb2.VaultStats:
        name = validation.validate_vault_name(request.name)
        info = self.reader(context).get_vault(name)
        return self.fanout.vault_stats(info, context)


def _too_large() -> errors.ApiError:
    return errors.ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE",
                           f"import files are limited to {MAX_IMPORT_BYTES} bytes", {"max": str(MAX_IMPORT_BYTES)})


def _receive_import(request_iterator: Iterator[vault_pb2.ImportChunk | None], context: grpc.ServicerContext,
                    ) -> tuple[vault_pb2.ImportHeader, str, cmd.ImportMode, bytearray]:
    """The header (validated) and the file's bytes, never more than MAX_IMPORT_BYTES of them.

    A file announced bigger than the bound is refused before any data is read; otherwise each chunk is
    checked before it is kept, so the node holds at most MAX_IMPORT_BYTES of upload per import whatever the
    client sends (grpc's receive limit bounds the one message in hand).
    """
    first = next(request_iterator, None)
    if first is None or first.WhichOneof("chunk") != "header":
        raise errors.invalid_argument("the first ImportChunk must be the header", field="header")
    header = first.header
    validation.validate_vault_name(header.vault)
    fmt = _IMPORT_FORMATS.get(header.format)
    mode = _IMPORT_MODES.get(header.mode)
    if fmt is None or mode is None:
        raise errors.invalid_argument("unknown import format or mode", field="format" if fmt is None else "mode")
    if header.size > MAX_IMPORT_BYTES:
        raise _too_large()
    data = bytearray()
    for chunk in request_iterator:
        if chunk.WhichOneof("chunk") != "data":
            raise errors.invalid_argument("only the first ImportChunk may be a header", field="header")
        if len(data) + len(chunk.data) > MAX_IMPORT_BYTES:
            raise _too_large()
        data += chunk.data
    # grpcio may end the request stream of a call the client abandoned as if it were complete: without
    # this, the part received would be imported as the whole file.
    if header.size and len(data) != header.size:
        if not context.is_active():  # the client left: say so in the metrics, not MALFORMED_IMPORT
            gone = errors.client_gone(context.time_remaining())
            raise errors.ApiError(gone.code, gone.reason, gone.message)
        raise errors.ApiError(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_IMPORT",
                              f"the import stream carried {len(data)} of the {header.size} bytes its header "
                              "announced", {"field": "size", "expected": str(header.size),
                                            "received": str(len(data))})
    return header, fmt, mode, data


def _split(entries: list[cmd.ImportEntry]) -> list[list[cmd.ImportEntry]]:
    """Consecutive groups of entries whose encoded size stays under IMPORT_CHUNK_BYTES (one per log entry)."""
    chunks: list[list[cmd.ImportEntry]] = []
    current: list[cmd.ImportEntry] = []
    size = 0
    for entry in entries:
        entry_size = len(entry.key.encode()) + len(entry.value) + 16
        if current and size + entry_size > IMPORT_CHUNK_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks
