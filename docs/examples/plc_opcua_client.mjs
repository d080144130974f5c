// A PLC's handshake with the station over OPC UA, written with node-opcua (a second OPC UA
// stack, independent of the station's asyncua): connect with Basic256Sha256 SignAndEncrypt
// and a user name, wait for Ready, call Trigger(partId), wait until LastVerdict.InspectionId
// is the returned id, read the verdict fields in one Read. docs/plc.md explains each step.
//
//   npm install node-opcua-client@2 node-opcua-certificate-manager@2
//   node plc_opcua_client.mjs ENDPOINT CLIENT_CERT.pem CLIENT_KEY.pem APPLICATION_URI USER PASSWORD PART_ID
//
// Prints one JSON line with the verdict; exit 0 PASS, 1 FAIL, 2 ERROR, 3 no verdict in time.
import {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds, DataType, UserTokenType,
} from "node-opcua-client";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [endpoint, certificateFile, privateKeyFile, applicationUri, userName, password, partId] =
  process.argv.slice(2);
const NS = "urn:inspection-station:opcua";
const VERDICT_TIMEOUT_MS = 60_000; // longer than the station's cycle.cycle_timeout_s

const client = OPCUAClient.create({
  applicationName: "plc-example",
  applicationUri,
  securityMode: MessageSecurityMode.SignAndEncrypt,
  securityPolicy: SecurityPolicy.Basic256Sha256,
  certificateFile,
  privateKeyFile,
  // The station's certificate is accepted on first use here; a PLC pins it in its trust list.
  clientCertificateManager: new OPCUACertificateManager({
    rootFolder: mkdtempSync(join(tmpdir(), "pki-")),
    automaticallyAcceptUnknownCertificate: true,
  }),
  endpointMustExist: true, // the URL must be exactly the one the station advertises
  connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let code = 3;
try {
  await client.connect(endpoint);
  const session = await client.createSession({ type: UserTokenType.UserName, userName, password });
  const ns = (await session.readNamespaceArray()).indexOf(NS);
  const id = (s) => `ns=${ns};s=${s}`;
  const read = async (...ids) =>
    (await session.read(ids.map((n) => ({ nodeId: id(n), attributeId: AttributeIds.Value }))))
      .map((dv) => dv.value.value);

  const deadline = Date.now() + VERDICT_TIMEOUT_MS;
  while (!(await read("Station.Ready"))[0]) {
    if (Date.now() > deadline) throw new Error("station never Ready");
    await sleep(50);
  }
  const result = await session.call({
    objectId: id("Station"),
    methodId: id("Station.Trigger"),
    inputArguments: [{ dataType: DataType.String, value: partId }],
  });
  if (result.statusCode.value !== 0) throw new Error(`Trigger refused: ${result.statusCode.name}`);
  const inspectionId = result.outputArguments[0].value;

  for (;;) {
    const [lastId, busy] = await read("Station.LastVerdict.InspectionId", "Station.Busy");
    if (lastId === inspectionId) break;
    if (Date.now() > deadline) throw new Error(`no verdict for ${inspectionId} (busy=${busy})`);
    await sleep(50);
  }
  const [verdict, verdictCode, reasons, defectTotal, lastId] = await read(
    "Station.LastVerdict.Verdict", "Station.LastVerdict.VerdictCode",
    "Station.LastVerdict.Reasons", "Station.LastVerdict.DefectTotal",
    "Station.LastVerdict.InspectionId");
  console.log(JSON.stringify({
    inspectionId: lastId, partId, verdict, verdictCode,
    reasons: Array.from(reasons ?? []), defectTotal,
  }));
  code = { 1: 0, 2: 1, 3: 2 }[verdictCode] ?? 3;
  await session.close();
} catch (err) {
  console.error(`plc_opcua_client: ${err.message}`);
} finally {
  await client.disconnect();
}
process.exit(code);
