import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');

// What `npm pack` would ship: the guides it carries send users to the exporter and the models.
describe('the npm package', () => {
  it('ships the exporter that docs/guides/export-your-deq.md tells users to install, the models, the docs and the build', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const files = new Set((JSON.parse(out)[0].files as { path: string }[]).map((f) => f.path));
    for (const path of ['exporter/pyproject.toml', 'exporter/deq_serve_export/export.py', 'docs/guides/export-your-deq.md', 'models/fashion-mnist-jr/manifest.json', 'dist/cli/main.js', 'vendor/open-inference-protocol/open_inference_grpc.proto', 'vendor/open-inference-protocol/LICENSE']) {
      expect(files.has(path), path).toBe(true);
    }
    // Only the exporter's sources: not what pip or Python leave beside them after the exporter suite has run.
    expect([...files].filter((p) => /__pycache__|\.pyc$|^exporter\/build\/|\.egg-info\//.test(p))).toEqual([]);
  }, 60_000);
});
