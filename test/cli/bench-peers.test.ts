// The CLI side of bench compare --peers and bench http --peer (issue #29) without the peers' venv:
// a peer that cannot run is named in the report with the reason (deq-serve still runs), and bad
// peer options are refused. The peers themselves: test/peers/ (npm run test:peers).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';

const JR = resolve(import.meta.dirname, '..', '..', 'models', 'fashion-mnist-jr');

describe('deq-serve bench compare --peers / bench http --peer', () => {
  let dir: string;
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'deq-bench-peers-test-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  it('names a peer whose interpreter is missing as not run, with the reason, and still measures deq-serve', async () => {
    const out = join(dir, 'peers.md');
    const missing = join(dir, 'no-venv', 'bin', 'python');
    const r = await runCli(['bench', 'compare', JR, '--peers', 'onnxruntime,torchdeq', '--peers-python', missing, '--json', '--batches', '1', '--images', '2', '--rounds', '1', '--data-dir', FASHION_MNIST_SLICE, '--out', out], 120_000);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.peers).toEqual([]);
    expect(report.unavailable.map((u: { peer: string }) => u.peer)).toEqual(['onnxruntime', 'torchdeq']);
    expect(report.unavailable[0].why).toContain(missing);
    expect(report.unavailable[0].why).toContain('make-bench-venv.sh');
    expect(report.rows).toHaveLength(1);
    expect(report.rows[0]).toMatchObject({ batch: 1, threads: 1, samples: 2, peers: [] });
    expect(report.rows[0].deq_serve_ms).toBeGreaterThan(0);
    expect(report.rows[0].nfe_deq_serve).toBeGreaterThan(1);
    expect(await readFile(out, 'utf8')).toContain(`- onnxruntime: not run here — ${missing} does not exist`);
  });

  it('refuses an unknown peer by name', async () => {
    const r = await runCli(['bench', 'compare', JR, '--peers', 'onnxruntime,tflite']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown peer "tflite"/);
  });

  it('bench http refuses a peer it does not know, a peer without v2, and a peer with --url', async () => {
    const unknown = await runCli(['bench', 'http', '--compare', '--peer', 'flask', '--protocol', 'v2']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--peer must be fastapi/);
    const v1 = await runCli(['bench', 'http', '--compare', '--peer', 'fastapi']);
    expect(v1.code).toBe(2);
    expect(v1.stderr).toMatch(/v2 protocol only/);
    const url = await runCli(['bench', 'http', '--url', 'http://127.0.0.1:9', '--peer', 'fastapi', '--protocol', 'v2']);
    expect(url.code).toBe(2);
    expect(url.stderr).toMatch(/use it with --compare/);
  });
});
