"""The clients users already have, against a live deq-serve (issue #26).

Triton's tritonclient (HTTP and gRPC), the KServe Python SDK, and a client compiled here from
the vendored proto with grpcio-tools call every route and RPC they support; outputs are compared
bit for bit with the plain HTTP v2 JSON/binary answers for the same inputs, and bad input is
refused the same way by every carrier.

Each family runs in its own process (`oip_clients.py triton|kserve|proto`): tritonclient, kserve
and a compiled proto all register the `inference.*` messages in protobuf's default descriptor
pool, so importing two of them in one process fails ("duplicate symbol").

Run by test/clients/oip-clients.e2e.ts, which starts the server and sets:
  DEQ_HTTP (host:port), DEQ_GRPC (host:port), DEQ_PROTO (the vendored proto),
  DEQ_BODY_LIMIT (the server's --body-limit, bytes), DEQ_RESULTS (a JSON file for the results).
"""
import asyncio
import importlib
import json
import os
import struct
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

import grpc
import numpy as np

FAMILY = sys.argv[1] if len(sys.argv) > 1 else ""
if FAMILY == "triton":
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp
    from tritonclient.utils import InferenceServerException

HTTP = os.environ["DEQ_HTTP"]
GRPC = os.environ["DEQ_GRPC"]
PROTO = os.environ["DEQ_PROTO"]
BODY_LIMIT = int(os.environ["DEQ_BODY_LIMIT"])
# A second server with --model-control explicit, behind this key.
REPO_HTTP = os.environ["DEQ_REPO_HTTP"]
KEY = os.environ["DEQ_REPO_KEY"]

SOLVER_OUTPUTS = ["solver_iterations", "solver_residual", "solver_converged", "solver_stop_reason"]


def rest(path, body=None):
    """Plain HTTP v2 JSON: (status, parsed body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{HTTP}{path}", data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def rest_binary(model, inputs, outputs):
    """Plain HTTP v2 with the binary extension, built by hand: {output name: raw bytes}."""
    head = json.dumps({
        "inputs": [{"name": n, "datatype": d, "shape": list(a.shape), "parameters": {"binary_data_size": a.nbytes}} for n, d, a in inputs],
        "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
    }).encode()
    body = head + b"".join(np.ascontiguousarray(a).tobytes() for _, _, a in inputs)
    req = urllib.request.Request(f"http://{HTTP}/v2/models/{model}/infer", data=body, headers={
        "content-type": "application/octet-stream", "inference-header-content-length": str(len(head))})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        n = int(r.headers["inference-header-content-length"])
    header = json.loads(raw[:n])
    out, at = {}, n
    for o in header["outputs"]:
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = raw[at:at + size]
        at += size
    return out


def image(batch):
    rng = np.random.default_rng(7)
    return (rng.standard_normal((batch, 1, 8, 8)) * 0.5).astype(np.float32)


def tokens(batch, length):
    t = np.array([[3 + ((b * length + i) % 17) for i in range(length)] for b in range(batch)], dtype=np.int64)
    return t, (t + 1) % 20


def bytes_tensor(strings):
    """BYTES as the binary extension lays them out: 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(s)) + s for s in strings)


def as_bytes(arr, datatype):
    if datatype == "BYTES":
        return bytes_tensor([x if isinstance(x, bytes) else str(x).encode() for x in arr.reshape(-1)])
    return np.ascontiguousarray(arr).tobytes()


class TritonClients(unittest.TestCase):
    def setUp(self):
        self.http = thttp.InferenceServerClient(HTTP)
        self.grpc = tgrpc.InferenceServerClient(GRPC)

    def tearDown(self):
        self.http.close()
        self.grpc.close()

    def test_health_and_metadata(self):
        """Every health and metadata call of both tritonclient clients, against REST's JSON."""
        for c in (self.http, self.grpc):
            self.assertTrue(c.is_server_live())
            self.assertTrue(c.is_server_ready())
            self.assertTrue(c.is_model_ready("tiny-image"))
            self.assertFalse(c.is_model_ready("tiny-image", "7"))
        _, server = rest("/v2")
        self.assertEqual(self.http.get_server_metadata(), server)
        g = self.grpc.get_server_metadata(as_json=True)
        self.assertEqual((g["name"], g["version"], g["extensions"]), (server["name"], server["version"], server["extensions"]))
        for model in ("tiny-image", "tiny-lm"):
            _, meta = rest(f"/v2/models/{model}")
            self.assertEqual(self.http.get_model_metadata(model), meta)
            g = self.grpc.get_model_metadata(model, as_json=True)
            self.assertEqual(g["platform"], meta["platform"])
            for key in ("inputs", "outputs"):
                self.assertEqual([(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in g[key]],
                                 [(t["name"], t["datatype"], t["shape"]) for t in meta[key]])

    def _infer(self, client_mod, client, model, arrays, outputs, binary=True):
        inputs = []
        for name, dt, a in arrays:
            i = client_mod.InferInput(name, list(a.shape), dt)
            if client_mod is thttp:
                i.set_data_from_numpy(a, binary_data=binary)
            else:
                i.set_data_from_numpy(a)
            inputs.append(i)
        outs = [client_mod.InferRequestedOutput(o, binary_data=binary) if client_mod is thttp else client_mod.InferRequestedOutput(o) for o in outputs]
        return client.infer(model, inputs, outputs=outs)

    def test_image_outputs_bit_for_bit(self):
        """tiny-image at batch 3: tritonclient HTTP (JSON and binary) and gRPC give REST's exact bytes."""
        x = image(3)
        outputs = ["logits"] + SOLVER_OUTPUTS
        want = rest_binary("tiny-image", [("x", "FP32", x)], outputs)
        _, js = rest("/v2/models/tiny-image/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 1, 8, 8], "data": x.reshape(-1).tolist()}],
                                                      "outputs": [{"name": o} for o in outputs]})
        self.assertEqual(np.array(js["outputs"][0]["data"], dtype=np.float32).tobytes(), want["logits"])
        for mod, client, binary in ((thttp, self.http, True), (thttp, self.http, False), (tgrpc, self.grpc, True)):
            r = self._infer(mod, client, "tiny-image", [("x", "FP32", x)], outputs, binary)
            for o in outputs:
                dt = r.get_output(o)["datatype"] if mod is thttp else r.get_output(o).datatype
                got = r.as_numpy(o)
                self.assertIsNotNone(got, o)
                self.assertEqual(as_bytes(got, dt), want[o], f"{mod.__name__} binary={binary}: {o}")

    def test_language_model_int64(self):
        """tiny-lm, INT64 tokens in, FP32 and INT64 out, every output by default: same bytes over every carrier."""
        t, y = tokens(2, 6)
        arrays = [("tokens", "INT64", t), ("targets", "INT64", y)]
        names = ["target_logprobs", "topk_logprobs", "topk_ids", "logprobs"]
        want = rest_binary("tiny-lm", arrays, names)
        for mod, client in ((thttp, self.http), (tgrpc, self.grpc)):
            inputs = []
            for name, dt, a in arrays:
                i = mod.InferInput(name, list(a.shape), dt)
                i.set_data_from_numpy(a)
                inputs.append(i)
            r = client.infer("tiny-lm", inputs)  # no outputs named: every output
            for o in names:
                self.assertEqual(np.ascontiguousarray(r.as_numpy(o)).tobytes(), want[o], f"{mod.__name__}: {o}")

    def test_bad_input(self):
        """Wrong shape, wrong datatype, contents that do not match the shape, an oversize message: refused, server fine."""
        x = image(1)
        cases = {
            "wrong shape": [("x", "FP32", x.reshape(1, 1, 4, 16))],
            "wrong datatype": [("x", "FP64", x.astype(np.float64))],
            "unknown input": [("y", "FP32", x)],
        }
        for label, arrays in cases.items():
            for mod, client in ((thttp, self.http), (tgrpc, self.grpc)):
                with self.assertRaises(InferenceServerException, msg=f"{mod.__name__}: {label}") as cm:
                    self._infer(mod, client, "tiny-image", arrays, ["logits"])
                status = str(cm.exception.status())
                self.assertTrue("400" in status or "INVALID_ARGUMENT" in status, f"{label}: {status} {cm.exception}")
        # Contents that do not match the shape: an input whose declared shape needs more bytes than it sends.
        for mod, client in ((thttp, self.http), (tgrpc, self.grpc)):
            i = mod.InferInput("x", [1, 1, 8, 8], "FP32")
            i.set_data_from_numpy(x)
            i.set_shape([2, 1, 8, 8])  # what a buggy client sends: the shape says 2, the bytes hold 1
            with self.assertRaises(InferenceServerException, msg=f"{mod.__name__}: contents/shape") as cm:
                client.infer("tiny-image", [i])
            status = str(cm.exception.status())
            self.assertTrue("400" in status or "INVALID_ARGUMENT" in status, f"contents/shape: {status}")
        # Oversize: a message past --body-limit.
        big = np.zeros((BODY_LIMIT // 256 + 1, 1, 8, 8), dtype=np.float32)
        for mod, client, codes in ((thttp, self.http, ("413",)), (tgrpc, self.grpc, ("RESOURCE_EXHAUSTED",))):
            with self.assertRaises(InferenceServerException, msg=f"{mod.__name__}: oversize") as cm:
                self._infer(mod, client, "tiny-image", [("x", "FP32", big)], ["logits"])
            self.assertTrue(any(c in str(cm.exception.status()) for c in codes), f"oversize: {cm.exception.status()} {cm.exception}")
        self.assertTrue(self.grpc.is_server_live() and self.http.is_server_ready())


class TritonRepository(unittest.TestCase):
    def test_repository_api(self):
        """tritonclient's model control calls (HTTP) against --model-control explicit, with the API key."""
        c = thttp.InferenceServerClient(REPO_HTTP)
        h = {"authorization": f"Bearer {KEY}"}
        try:
            index = c.get_model_repository_index(headers=h)
            self.assertEqual([(e["name"], e["state"]) for e in index], [("tiny-image", "READY"), ("tiny-lm", "READY")])
            with self.assertRaises(InferenceServerException):
                c.get_model_repository_index()  # no key
            c.unload_model("tiny-lm", headers=h)
            self.assertFalse(c.is_model_ready("tiny-lm", headers=h))
            self.assertEqual([e["state"] for e in c.get_model_repository_index(headers=h)], ["READY", "UNAVAILABLE"])
            c.load_model("tiny-lm", headers=h)
            self.assertTrue(c.is_model_ready("tiny-lm", headers=h))
            with self.assertRaises(InferenceServerException) as cm:
                c.load_model("nope", headers=h)
            self.assertIn("404", str(cm.exception.status()))
        finally:
            c.close()


class KServeSDK(unittest.TestCase):
    def test_rest_and_grpc_clients(self):
        """The KServe SDK's REST (v2) and gRPC clients: health, metadata, infer; same bytes as REST."""
        from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

        x = image(2)
        want = rest_binary("tiny-image", [("x", "FP32", x)], ["logits"])

        async def run():
            i = InferInput(name="x", shape=list(x.shape), datatype="FP32")
            i.set_data_from_numpy(x)
            req = InferRequest(model_name="tiny-image", infer_inputs=[i], request_id="kserve-1")
            rc = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
            base = f"http://{HTTP}"
            try:
                self.assertTrue(await rc.is_server_live(base))
                self.assertTrue(await rc.is_server_ready(base))
                self.assertTrue(await rc.is_model_ready(base, "tiny-image"))
                r = await rc.infer(base, req, model_name="tiny-image")
                self.assertEqual(r.id, "kserve-1")
                self.assertEqual(np.ascontiguousarray(r.outputs[0].as_numpy()).astype(np.float32).tobytes(), want["logits"])
            finally:
                await rc.close()
            gc = InferenceGRPCClient(GRPC)
            try:
                self.assertTrue(await gc.is_server_live())
                self.assertTrue(await gc.is_server_ready())
                self.assertTrue(await gc.is_model_ready("tiny-image"))
                r = await gc.infer(req)
                self.assertEqual(r.id, "kserve-1")
                self.assertEqual(np.ascontiguousarray(r.outputs[0].as_numpy()).tobytes(), want["logits"])
            finally:
                await gc.close()

        asyncio.run(run())


class CompiledProtoClient(unittest.TestCase):
    """A client compiled here from the vendored proto with grpcio-tools: nobody's client library."""

    @classmethod
    def setUpClass(cls):
        from grpc_tools import protoc
        cls.out = tempfile.mkdtemp(prefix="oip-proto-")
        folder, name = os.path.split(PROTO)
        code = protoc.main(["protoc", f"-I{folder}", f"--python_out={cls.out}", f"--grpc_python_out={cls.out}", name])
        if code != 0:
            raise RuntimeError(f"protoc failed ({code})")
        sys.path.insert(0, cls.out)
        stem = name[:-len(".proto")]
        cls.pb = importlib.import_module(f"{stem}_pb2")
        cls.rpc = importlib.import_module(f"{stem}_pb2_grpc")
        cls.channel = grpc.insecure_channel(GRPC)
        cls.stub = cls.rpc.GRPCInferenceServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def test_every_rpc(self):
        pb, stub = self.pb, self.stub
        self.assertTrue(stub.ServerLive(pb.ServerLiveRequest()).live)
        self.assertTrue(stub.ServerReady(pb.ServerReadyRequest()).ready)
        self.assertTrue(stub.ModelReady(pb.ModelReadyRequest(name="tiny-lm")).ready)
        meta = stub.ServerMetadata(pb.ServerMetadataRequest())
        self.assertEqual(meta.name, "deq-serve")
        m = stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny-image"))
        self.assertEqual([(t.name, t.datatype) for t in m.inputs], [("x", "FP32")])
        with self.assertRaises(grpc.RpcError) as cm:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_typed_and_raw_contents(self):
        pb, stub = self.pb, self.stub
        x = image(2)
        want = rest_binary("tiny-image", [("x", "FP32", x)], ["logits", "solver_converged"])
        Req = pb.ModelInferRequest
        typed = stub.ModelInfer(Req(model_name="tiny-image", id="t", inputs=[Req.InferInputTensor(
            name="x", datatype="FP32", shape=list(x.shape), contents=pb.InferTensorContents(fp32_contents=x.reshape(-1).tolist()))],
            outputs=[Req.InferRequestedOutputTensor(name="logits"), Req.InferRequestedOutputTensor(name="solver_converged")]))
        self.assertEqual(typed.id, "t")
        self.assertEqual(np.array(typed.outputs[0].contents.fp32_contents, dtype=np.float32).tobytes(), want["logits"])
        self.assertEqual(bytes(typed.outputs[1].contents.bool_contents), want["solver_converged"])
        raw = stub.ModelInfer(Req(model_name="tiny-image", inputs=[Req.InferInputTensor(name="x", datatype="FP32", shape=list(x.shape))],
                                  raw_input_contents=[x.tobytes()], outputs=[Req.InferRequestedOutputTensor(name="logits")]))
        self.assertEqual(raw.raw_output_contents[0], want["logits"])
        for k, p in typed.parameters.items():
            self.assertIn(p.WhichOneof("parameter_choice"), ("bool_param", "int64_param", "string_param", "double_param"), k)
        with self.assertRaises(grpc.RpcError) as cm:
            stub.ModelInfer(Req(model_name="tiny-image", inputs=[Req.InferInputTensor(name="x", datatype="FP32", shape=[1, 1, 8, 8],
                                                                                      contents=pb.InferTensorContents(fp32_contents=[1.0, 2.0]))]))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("x", cm.exception.details())


class Results(unittest.TextTestResult):
    """Collects each test's outcome for the results file (the vitest wrapper reports them one by one)."""

    outcomes = {}

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes[test.id().split(".")[-1]] = {"ok": True}

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes[test.id().split(".")[-1]] = {"ok": False, "error": self._exc_info_to_string(err, test)}

    def addError(self, test, err):
        super().addError(test, err)
        name = test.id().split(".")[-1] if hasattr(test, "id") else str(test)
        self.outcomes[name] = {"ok": False, "error": self._exc_info_to_string(err, test)}


FAMILIES = {"triton": (TritonClients, TritonRepository), "kserve": (KServeSDK,), "proto": (CompiledProtoClient,)}

if __name__ == "__main__":
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in FAMILIES[FAMILY])
    result = unittest.TextTestRunner(resultclass=Results, verbosity=2).run(suite)
    with open(os.environ["DEQ_RESULTS"], "w") as f:
        json.dump(Results.outcomes, f, indent=1)
    sys.exit(0 if result.wasSuccessful() else 1)
