// deploy/kserve/: the ServingRuntime and the example InferenceServices against KServe's own
// CRD schemas (vendor/kserve/, gzipped verbatim, with their licence), checked strictly (an
// unknown field is an error, as `kubectl apply --validate=strict` makes it), and against the
// server they run: the runtime's environment, mounted model dir and ports start a server
// that answers REST and gRPC where the manifests say. No cluster needed.
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig, startServer } from '../../dist/server/index.js';
import { ROOT } from '../server/helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Doc = { apiVersion: string; kind: string; metadata: { name: string }; spec: any };

function load(file: string): Doc[] {
  const docs = parseAllDocuments(readFileSync(join(ROOT, 'deploy/kserve', file), 'utf8'));
  for (const d of docs) expect(d.errors, file).toEqual([]);
  return docs.map((d) => d.toJS() as Doc);
}

/** The CRD's openAPIV3Schema for a version, made strict: objects with listed properties take no others. */
function crdSchema(file: string, version: string): object {
  const crd = parse(gunzipSync(readFileSync(join(ROOT, 'vendor/kserve', file))).toString('utf8'));
  const v = crd.spec.versions.find((x: { name: string }) => x.name === version);
  const strict = (s: any): any => {
    if (Array.isArray(s)) return s.map(strict);
    if (!s || typeof s !== 'object') return s;
    const out: any = {};
    for (const [k, val] of Object.entries(s)) out[k] = k === 'properties' ? Object.fromEntries(Object.entries(val as object).map(([p, ps]) => [p, strict(ps)])) : strict(val);
    if (s.type === 'object' && s.properties && s.additionalProperties === undefined && !s['x-kubernetes-preserve-unknown-fields'] && !s.properties.apiVersion) out.additionalProperties = false;
    if (s.properties?.apiVersion && s.properties.spec) out.additionalProperties = false; // the resource's top level
    return out;
  };
  return strict(v.schema.openAPIV3Schema);
}

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
const SCHEMAS: Record<string, ReturnType<Ajv['compile']>> = {
  'serving.kserve.io/v1alpha1 ServingRuntime': ajv.compile(crdSchema('serving.kserve.io_servingruntimes.yaml.gz', 'v1alpha1')),
  'serving.kserve.io/v1beta1 InferenceService': ajv.compile(crdSchema('serving.kserve.io_inferenceservices.yaml.gz', 'v1beta1')),
};

function validate(doc: Doc): string[] {
  const v = SCHEMAS[`${doc.apiVersion} ${doc.kind}`];
  if (!v) return [`no schema for ${doc.apiVersion} ${doc.kind}`];
  return v(doc) ? [] : v.errors!.map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`);
}

const [runtime] = load('serving-runtime.yaml');
const services = load('inference-service.yaml');
const container = runtime.spec.containers[0];
const env: Record<string, string> = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));

describe('deploy/kserve manifests', () => {
  it('pass KServe\'s CRD schemas, strictly', () => {
    expect(validate(runtime)).toEqual([]);
    expect(services.length).toBeGreaterThan(0);
    for (const s of services) expect(validate(s), s.metadata.name).toEqual([]);
  });

  it('the schema check can fail: a misspelt field, a wrong type, a wrong list are refused', () => {
    const typo = structuredClone(services[0]);
    typo.spec.predictor.model.protocolVersions = 'v2';
    expect(validate(typo).join()).toMatch(/protocolVersions/);
    const port = structuredClone(runtime);
    port.spec.containers[0].ports[0].containerPort = '8080';
    expect(validate(port).join()).toMatch(/containerPort/);
    const priority = structuredClone(runtime);
    priority.spec.supportedModelFormats[0].priority = 'high';
    expect(validate(priority).join()).toMatch(/priority/);
    const list = structuredClone(runtime);
    list.spec.protocolVersions = 'v2';
    expect(validate(list).join()).toMatch(/protocolVersions/);
  });

  it('the runtime declares v2 over REST and gRPC and the format the InferenceServices ask for', () => {
    expect(runtime.spec.protocolVersions).toEqual(['v2', 'grpc-v2']);
    expect(container.name).toBe('kserve-container'); // the name KServe merges the predictor's settings into
    for (const s of services) {
      const m = s.spec.predictor.model;
      expect(m.runtime).toBe(runtime.metadata.name);
      expect(runtime.spec.supportedModelFormats.some((f: any) => f.name === m.modelFormat.name && f.version === m.modelFormat.version)).toBe(true);
      expect(runtime.spec.protocolVersions).toContain(m.protocolVersion);
      expect(m.storageUri).toMatch(/^(pvc|s3|gs|https?):\/\/./);
    }
  });

  it('follows KServe\'s conventions: /mnt/models, HTTP on the declared port (probes, metrics), gRPC where the gRPC service points', () => {
    expect(env.DEQ_MODELS_DIR).toBe('/mnt/models');
    expect(env.DEQ_HOST).toBe('0.0.0.0');
    const http = Number(env.DEQ_PORT);
    expect(container.ports[0].containerPort).toBe(http);
    expect(container.readinessProbe.httpGet.port).toBe(http);
    expect(container.livenessProbe.httpGet.port).toBe(http);
    expect(Number(runtime.spec.annotations['prometheus.kserve.io/port'])).toBe(http);
    const grpcService = services.find((s) => s.spec.predictor.model.protocolVersion === 'grpc-v2')!;
    expect(grpcService.spec.predictor.model.ports).toEqual([{ name: 'h2c', containerPort: Number(env.DEQ_GRPC_PORT), protocol: 'TCP' }]);
    expect(container.securityContext.runAsUser).toBe(10001); // the image's user (Dockerfile: USER 10001)
  });

  it('the runtime\'s environment starts a server on a mounted single bundle that answers REST and gRPC where the manifests say', async () => {
    // /mnt/models as the storage initializer leaves it: the storageUri's bundle folder itself.
    const bundle = services[0].spec.predictor.model.storageUri.split('/').pop();
    const mnt = await mkdtemp(join(tmpdir(), 'deq-kserve-'));
    await cp(join(ROOT, 'models', bundle), mnt, { recursive: true });
    // The manifest's variables as the container sees them; only the ports become free ones and the host loopback.
    const config = loadConfig([], { ...env, DEQ_MODELS_DIR: mnt, DEQ_PORT: '0', DEQ_GRPC_PORT: '0', DEQ_HOST: '127.0.0.1', DEQ_LOG_LEVEL: 'silent' });
    expect(config.grpcPort).toBe(0);
    const server = await startServer(config);
    try {
      for (const probe of [container.readinessProbe, container.livenessProbe]) expect((await fetch(`${server.url}${probe.httpGet.path}`)).status).toBe(200);
      expect((await fetch(`${server.url}${runtime.spec.annotations['prometheus.kserve.io/path']}`)).status).toBe(200);
      const meta = await (await fetch(`${server.url}/v2/models/${bundle}`)).json() as any;
      expect(meta.name).toBe(bundle);
      const def = protoLoader.loadSync(join(ROOT, 'vendor/open-inference-protocol/open_inference_grpc.proto'), { keepCase: true, longs: String, defaults: true, oneofs: true });
      const { inference } = grpc.loadPackageDefinition(def) as any;
      const client = new inference.GRPCInferenceService(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
      const ready = await new Promise<any>((res, rej) => client.ModelReady({ name: bundle }, (e: Error | null, r: any) => (e ? rej(e) : res(r))));
      client.close();
      expect(ready).toEqual({ ready: true });
    } finally {
      await server.close();
      await rm(mnt, { recursive: true, force: true });
    }
  }, 60_000);
});
