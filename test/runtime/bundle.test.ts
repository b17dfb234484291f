import { readFile, rm, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadBundle } from '../../src/runtime/bundle.js';
import { DeqModel } from '../../src/runtime/deq-model.js';
import { DeqError } from '../../src/errors.js';
import { scratchCopy, TINY_IMAGE, TINY_LM } from '../helpers/fixtures.js';

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.map((c) => c()));
  cleanups = [];
});

async function damaged(bundle: string, damage: (dir: string) => Promise<void>): Promise<string> {
  const { dir, cleanup } = await scratchCopy(bundle);
  cleanups.push(cleanup);
  await damage(dir);
  return dir;
}

async function editManifest(dir: string, edit: (m: Record<string, any>) => void): Promise<void> {
  const path = join(dir, 'manifest.json');
  const m = JSON.parse(await readFile(path, 'utf8'));
  edit(m);
  await writeFile(path, JSON.stringify(m));
}

async function loadError(dir: string): Promise<DeqError> {
  const err = await loadBundle(dir).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(DeqError);
  return err as DeqError;
}

describe('loadBundle', () => {
  it('loads both fixtures with their vocab and parity cases', async () => {
    const image = await loadBundle(TINY_IMAGE);
    expect(image.manifest.task).toBe('image-classification');
    expect(image.parity?.cases.length).toBeGreaterThan(0);
    const lm = await loadBundle(TINY_LM);
    expect(lm.vocab).toContain('<unk>');
    expect(lm.manifest.tokenizer?.context).toBeGreaterThan(1);
  });

  it('names the bundle in a bad manifest\'s message, once', async () => {
    const dir = await damaged(TINY_IMAGE, (d) => editManifest(d, (m) => { m.solver.tol = 'x'; }));
    const err = await loadError(dir);
    expect(err.code).toBe('DEQ_ERR_BUNDLE_INVALID');
    expect(err.message).toBe(`${dir}: manifest.json: /solver/tol must be number`);
  });

  it('names the missing file', async () => {
    const dir = await damaged(TINY_IMAGE, (d) => rm(join(d, 'cell.onnx')));
    const err = await loadError(dir);
    expect(err.code).toBe('DEQ_ERR_BUNDLE_FILE_MISSING');
    expect(err.message).toContain('cell.onnx');
  });

  it('rejects a corrupted graph by checksum, naming the file and field', async () => {
    const dir = await damaged(TINY_IMAGE, (d) => appendFile(join(d, 'head.onnx'), Buffer.from([0])));
    const err = await loadError(dir);
    expect(err.code).toBe('DEQ_ERR_BUNDLE_CHECKSUM');
    expect(err.message).toContain('head.onnx');
    expect(err.message).toContain('graphs.head.sha256');
  });

  it('rejects a wrong checksum in the manifest', async () => {
    const dir = await damaged(TINY_LM, (d) => editManifest(d, (m) => { m.tokenizer.sha256 = '0'.repeat(64); }));
    const err = await loadError(dir);
    expect(err.code).toBe('DEQ_ERR_BUNDLE_CHECKSUM');
    expect(err.message).toContain('vocab.json');
  });

  it('rejects a manifest that is not JSON', async () => {
    const dir = await damaged(TINY_IMAGE, (d) => writeFile(join(d, 'manifest.json'), '{"format": '));
    const err = await loadError(dir);
    expect(err.code).toBe('DEQ_ERR_BUNDLE_INVALID');
    expect(err.message).toContain('manifest.json');
  });

  it.each([
    ['a bad solver tolerance', (m: any) => { m.solver.tol = -1; }, '/solver/tol'],
    ['an unknown task', (m: any) => { m.task = 'segmentation'; }, '/task'],
    ['a missing graph', (m: any) => { delete m.graphs.head; }, 'head'],
    ['a path in a file name', (m: any) => { m.graphs.cell.file = '../cell.onnx'; }, '/graphs/cell/file'],
    ['labels that do not match the logits', (m: any) => { m.labels = ['a', 'b']; }, 'labels'],
    ['a state shape that differs from the injection', (m: any) => { m.state.shape = [4, 4, 5]; }, 'state.shape'],
    ['an output role naming no head output', (m: any) => { m.outputs.logits = 'scores'; }, 'outputs.logits'],
    ['an unknown solver precision', (m: any) => { m.solver.precision = 'float16'; }, '/solver/precision'],
  ])('rejects %s, naming the field', async (_what, edit, field) => {
    const dir = await damaged(TINY_IMAGE, (d) => editManifest(d, edit));
    const err = await loadError(dir);
    expect(err.code).toBe('DEQ_ERR_BUNDLE_INVALID');
    expect(err.message).toContain(field);
  });

  it('solver.precision "float32" gives the model the float32 kernel; no precision, the float64 one', async () => {
    const dir = await damaged(TINY_IMAGE, (d) => editManifest(d, (m) => { m.solver.precision = 'float32'; }));
    for (const [bundle, kernel] of [[dir, 'wasm-f32'], [TINY_IMAGE, 'wasm']]) {
      const model = await DeqModel.load(bundle);
      expect(model.solverKernel).toBe(kernel);
      await model.release();
    }
  });

  it('reads state.pad "right" (the language-model fixture declares it)', async () => {
    expect((await loadBundle(TINY_LM)).manifest.state.pad).toBe('right');
    expect((await loadBundle(TINY_IMAGE)).manifest.state.pad).toBeUndefined();
  });

  it.each([
    ['an unknown padding side', TINY_LM, (m: any) => { m.state.pad = 'left'; }, '/state/pad'],
    ['padding given as a boolean', TINY_LM, (m: any) => { m.state.pad = true; }, '/state/pad'],
    ['padding of a state without a symbolic axis', TINY_IMAGE, (m: any) => { m.state.pad = 'right'; }, 'state.pad'],
    ['padding of a state whose symbolic axis is not the first', TINY_LM, (m: any) => {
      for (const t of [m.state, m.graphs.cell.inputs[0], m.graphs.cell.outputs[0], m.graphs.head.inputs[0]]) t.shape = [16, -1];
    }, 'state.pad'],
    ['padding of a cell input with a symbolic dim past the first', TINY_LM, (m: any) => {
      m.graphs.inject.outputs[0].shape = [-1, -1];
      m.graphs.cell.inputs[1].shape = [-1, -1];
    }, 'graphs.cell.inputs[1] "u"'],
  ])('rejects %s, naming the field', async (_what, bundle, edit, field) => {
    const dir = await damaged(bundle, (d) => editManifest(d, edit));
    const err = await loadError(dir);
    expect(err.code).toBe('DEQ_ERR_BUNDLE_INVALID');
    expect(err.message).toContain(field);
  });

  it('a graph whose inputs differ from the manifest fails at model load and leaves nothing open', async () => {
    // (renaming the cell's injection input is caught earlier: it must name an inject output)
    const dir = await damaged(TINY_IMAGE, (d) => editManifest(d, (m) => { m.graphs.cell.inputs[0].name = 'state'; }));
    const err = await DeqModel.load(dir).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DeqError);
    expect((err as DeqError).code).toBe('DEQ_ERR_BUNDLE_INVALID');
    expect((err as DeqError).message).toMatch(/cell\.onnx.*"state"/);
  });
});
