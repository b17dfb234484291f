// deploy/kubernetes/: every manifest against the Kubernetes schemas (kubernetes-models),
// and against the server it deploys: probe paths are real routes, ports and the
// drain budget agree with the image and the server's settings. No cluster needed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Service } from 'kubernetes-models/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_CONFIG } from '../../dist/server/index.js';
import { ROOT, startTestServer, type TestServer } from '../server/helpers.js';

const DIR = join(ROOT, 'deploy/kubernetes');
const MODELS = { Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget } as const;

type Doc = { apiVersion: string; kind: keyof typeof MODELS; metadata: { name: string }; spec: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

function load(file: string): Doc[] {
  const docs = parseAllDocuments(readFileSync(join(DIR, file), 'utf8'));
  for (const d of docs) expect(d.errors, file).toEqual([]);
  return docs.map((d) => d.toJS() as Doc);
}

/** The files a kustomization lists, loaded (paths relative to its folder). */
function kustomization(folder: string): Doc[] {
  const k = load(join(folder, 'kustomization.yaml'))[0] as unknown as { resources: string[] };
  return k.resources.flatMap((r) => load(join(folder, r)));
}

function validate(doc: Doc): void {
  const Model = MODELS[doc.kind];
  expect(Model, `no schema for ${doc.kind}`).toBeDefined();
  new Model(doc as never).validate();
}

/** `ENV KEY=value` from the Dockerfile's final stage. */
function imageEnv(key: string): string {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const m = new RegExp(`\\b${key}=(\\S+)`).exec(text.slice(text.lastIndexOf('\nFROM ')));
  if (!m) throw new Error(`Dockerfile sets no ${key}`);
  return m[1];
}

const VARIANTS = { cpu: kustomization('.'), gpu: kustomization('gpu') };

describe.each(Object.entries(VARIANTS))('kubernetes manifests (%s)', (variant, docs) => {
  const deployment = docs.find((d) => d.kind === 'Deployment')!;
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const env = Object.fromEntries((container.env as { name: string; value: string }[]).map((e) => [e.name, e.value]));

  it('has a Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget that pass the Kubernetes schemas', () => {
    expect(docs.map((d) => d.kind).sort()).toEqual(['Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service']);
    for (const d of docs) validate(d);
  });

  it('the schema check can fail: a string port is refused', () => {
    const bad = structuredClone(deployment);
    bad.spec.template.spec.containers[0].ports[0].containerPort = '8080';
    expect(() => validate(bad)).toThrow(/containerPort/);
  });

  it('wires the Service, HPA and PDB to the Deployment and its pods', () => {
    const labels = deployment.spec.template.metadata.labels;
    const matches = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
    expect(matches(deployment.spec.selector.matchLabels)).toBe(true);
    const svc = docs.find((d) => d.kind === 'Service')!;
    expect(matches(svc.spec.selector)).toBe(true);
    expect(container.ports.map((p: { name: string }) => p.name)).toContain(svc.spec.ports[0].targetPort);
    expect(matches(docs.find((d) => d.kind === 'PodDisruptionBudget')!.spec.selector.matchLabels)).toBe(true);
    const hpa = docs.find((d) => d.kind === 'HorizontalPodAutoscaler')!;
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2); // the PDB can then always let one go
    expect(container.resources.requests.cpu).toBeDefined(); // HPA CPU utilisation is relative to requests
  });

  it('listens where the image listens, non-root, read-only root filesystem, with resource limits', () => {
    const http = container.ports.find((p: { name: string }) => p.name === 'http');
    expect(http.containerPort).toBe(Number(imageEnv('DEQ_PORT')));
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBe(10001);
    expect(pod.securityContext.runAsGroup).toBe(10001);
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).toMatch(/useradd[^\n]*--uid 10001 --gid 10001/);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    for (const r of ['cpu', 'memory']) {
      expect(container.resources.requests[r], r).toBeDefined();
      expect(container.resources.limits[r], r).toBeDefined();
    }
    // Workers × threads within the CPU limit, one core left for HTTP when there are more.
    expect(Number(env.DEQ_WORKERS)).toBeLessThanOrEqual(Math.max(1, Number(container.resources.limits.cpu) - 1));
    if (variant === 'gpu') {
      expect(container.resources.limits['nvidia.com/gpu']).toBe(1);
      expect(container.image).toMatch(/cuda/);
      expect(env.DEQ_PROVIDERS?.split(',')[0]).toBe('cuda');
    } else {
      expect(container.resources.limits['nvidia.com/gpu']).toBeUndefined();
    }
  });

  it('gives the drain its time: preStop pause, then the shutdown grace, inside terminationGracePeriodSeconds', () => {
    const pause = container.lifecycle.preStop.exec.command;
    expect(pause[0]).toBe('sleep');
    const pauseS = Number(pause[1]);
    expect(pauseS).toBeGreaterThan(0);
    const graceMs = Number(env.DEQ_SHUTDOWN_GRACE_MS ?? DEFAULT_CONFIG.shutdownGraceMs);
    // Any admitted request can finish within the grace period.
    expect(graceMs).toBeGreaterThanOrEqual(Number(env.DEQ_REQUEST_TIMEOUT_MS ?? DEFAULT_CONFIG.requestTimeoutMs));
    // The server force-exits 5 s after the grace (close-with-grace delay in src/server/index.ts).
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(pauseS + graceMs / 1000 + 5);
    expect(pod.terminationGracePeriodSeconds).toBeLessThanOrEqual(pauseS + graceMs / 1000 + 15);
  });

  describe('probes against the real server', () => {
    let server: TestServer;
    beforeAll(async () => { server = await startTestServer(); });
    afterAll(async () => { await server?.cleanup(); });

    it.each(['startupProbe', 'readinessProbe', 'livenessProbe'])('%s asks a route the server answers 200 on the named container port', async (probe) => {
      const get = container[probe].httpGet;
      expect(get.port).toBe('http');
      expect(get.path).toMatch(/^\/v2\/health\/(ready|live)$/);
      const res = await fetch(`${server.url}${get.path}`);
      expect(res.status).toBe(200);
      // Readiness and startup gate on warm-up; liveness must not (it answers while models load).
      expect(get.path).toBe(probe === 'livenessProbe' ? '/v2/health/live' : '/v2/health/ready');
    });
  });
});

it('readiness (startup, readiness probes) turns 503 while draining; liveness stays 200', async () => {
  const s = await startTestServer();
  try {
    s.state.closing = true;
    expect((await fetch(`${s.url}/v2/health/ready`)).status).toBe(503);
    expect((await fetch(`${s.url}/v2/health/live`)).status).toBe(200);
  } finally {
    s.state.closing = false;
    await s.cleanup();
  }
});
