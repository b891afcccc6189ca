// An independent TLS client for tests/api/test_tls.py: Node.js with @grpc/grpc-js (BoringSSL is not involved:
// Node uses OpenSSL). Usage: node tls_client.js ENDPOINT CA_FILE PROTO_ROOT; the token comes from
// VAULTD_TOKEN (never an argument: arguments show in `ps`). Puts a value, reads it back and prints JSON.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [endpoint, caFile, protoRoot] = process.argv.slice(2);
const definition = protoLoader.loadSync(path.join(protoRoot, "vaultd/v1/vault.proto"),
  { includeDirs: [protoRoot], keepCase: true, longs: Number, defaults: true });
const vaultd = grpc.loadPackageDefinition(definition).vaultd.v1;
const client = new vaultd.VaultService(endpoint, grpc.credentials.createSsl(fs.readFileSync(caFile)));
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${process.env.VAULTD_TOKEN}`);
const deadline = () => new Date(Date.now() + 10000);

client.Put({ vault: "node-js", key: "k", value: Buffer.from("from node"), request_id: "node-js-put-1" }, metadata,
  { deadline: deadline() }, (err, put) => {
    if (err) { console.log(JSON.stringify({ error: err.code, details: err.details })); process.exit(1); }
    client.Get({ vault: "node-js", key: "k" }, metadata, { deadline: deadline() }, (err2, entry) => {
      if (err2) { console.log(JSON.stringify({ error: err2.code, details: err2.details })); process.exit(1); }
      console.log(JSON.stringify({ version: put.version, value: Buffer.from(entry.value).toString() }));
      client.close();
    });
  });
