// One describe block for a script of export cases (field_cases.py, torchdeq_cases.py): the
// script exports each case and writes results.json; every case must have done what it expects,
// every served bundle must pass `deq-serve inspect` and answer with the user's own model's
// outputs within 1e-4, converged. Used by test/exporter/field-models.test.ts and
// test/exporter-pypi/torchdeq.test.ts.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { postJson, ROOT } from '../server/helpers.js';
import { loadConfig, startServer, type RunningServer } from '../../dist/server/index.js';

type Nested = number | Nested[];
const flat = (v: Nested): number[] => (Array.isArray(v) ? v.flatMap(flat) : [v]);

export interface CaseResult {
  ok: boolean;
  detail: string;
  written?: boolean;
  reference?: { inputs: Record<string, Nested>; outputs: Record<string, Nested> };
}

export interface ExportCases {
  title: string;
  /** The Python that runs the script (Debian's, or the PyPI venv's). */
  python: string;
  script: string;
  /** Every case the script must report ok. */
  cases: string[];
  /** [bundle, case]: bundles to inspect and serve, against the case's reference outputs. */
  served: [string, string][];
  /** Further bundles that must pass inspect. */
  inspected?: string[];
  /** More checks, given the results and the work folder. */
  more?: (ctx: { results: () => Record<string, CaseResult>; work: () => string }) => void;
}

function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd: ROOT, timeout: 600_000, env: { ...process.env, ...env }, maxBuffer: 32 << 20 }, (err, _out, stderr) => {
      done({ code: err ? 1 : 0, stderr });
    });
  });
}

export function describeExportCases(spec: ExportCases): void {
  describe(spec.title, () => {
    let work: string;
    let results: Record<string, CaseResult>;
    let server: RunningServer | undefined;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'deq-cases-'));
      const r = await run(spec.python, [spec.script, work], { PYTHONPATH: 'exporter:test/exporter' });
      if (r.code !== 0 || !existsSync(join(work, 'results.json'))) throw new Error(`${spec.script} failed:\n${r.stderr.slice(-4000)}`);
      results = JSON.parse(await readFile(join(work, 'results.json'), 'utf8'));
      const config = loadConfig(['--models-dir', join(work, 'models'), '--port', '0', '--host', '127.0.0.1', '--workers', '1'], {}, { logLevel: 'silent' });
      server = await startServer(config);
    }, 600_000);

    afterAll(async () => {
      await server?.close();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it.each(spec.cases)('%s', (name) => {
      const r = results[name];
      expect(r, `no result for ${name}`).toBeDefined();
      expect(r.ok, r.detail).toBe(true);
    });

    it.each([...spec.served.map(([b]) => b), ...(spec.inspected ?? [])])('deq-serve inspect passes %s', async (bundle) => {
      const r = await runCli(['inspect', join(work, 'models', bundle)]);
      expect(r.stdout).toMatch(/parity\s+PASS/);
      expect(r.stdout).toMatch(/stability\s+ok/);
      expect(r.code).toBe(0);
    });

    it.each(spec.served)('%s: served outputs match the user\'s own model to 1e-4, converged', async (bundle, name) => {
      const ref = results[name].reference!;
      const res = await postJson(`${server!.url}/v1/models/${bundle}/predict`, { inputs: ref.inputs });
      expect(res.status).toBe(200);
      const body = await res.json() as { outputs: Record<string, Nested>; solver: { converged: boolean } };
      expect(body.solver.converged).toBe(true);
      for (const [k, want] of Object.entries(ref.outputs)) {
        const got = flat(body.outputs[k]), w = flat(want);
        expect(got.length).toBe(w.length);
        let d = 0;
        for (let i = 0; i < w.length; i++) d = Math.max(d, Math.abs(got[i] - w[i]));
        expect(d).toBeLessThanOrEqual(1e-4);
      }
    });

    spec.more?.({ results: () => results, work: () => work });
  });
}
