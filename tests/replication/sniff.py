"""Capture TCP payloads on the loopback interface (AF_PACKET raw socket; tests run as root here).

Why: "the Raft links are TLS" should be seen on the wire, not inferred from the cluster working.
"""

from __future__ import annotations

import socket
import struct
import time

_ETH_P_ALL = 0x0003
_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4   # on lo every packet is seen twice (out and in): keep one copy


def tcp_payloads(ports: set[int], seconds: float, max_segments: int = 2000) -> list[bytes]:
    """Payloads of TCP segments from or to `ports` on lo during `seconds` (at most `max_segments`)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(_ETH_P_ALL))
    out: list[bytes] = []
    try:
        sock.bind(("lo", 0))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(out) < max_segments:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                frame, addr = sock.recvfrom(65535 + 14)
            except TimeoutError:
                break
            if addr[2] != _PACKET_OUTGOING or len(frame) < 34:
                continue
            if struct.unpack("!H", frame[12:14])[0] != _ETH_P_IP or frame[23] != socket.IPPROTO_TCP:
                continue
            ihl = (frame[14] & 0x0F) * 4
            total = struct.unpack("!H", frame[16:18])[0]
            tcp = 14 + ihl
            sport, dport = struct.unpack("!HH", frame[tcp:tcp + 4])
            if sport not in ports and dport not in ports:
                continue
            payload = frame[tcp + (frame[tcp + 12] >> 4) * 4:14 + total]
            if payload:
                out.append(payload)
    finally:
        sock.close()
    return out
