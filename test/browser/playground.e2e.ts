// The playground in a real browser: Debian's chromium driven by playwright-core (no browser
// download). `npm run test:browser`; .ci/run installs chromium when it is missing.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startServer, type RunningServer } from '../../dist/server/index.js';
import { readFashionMnist } from '../../src/eval/fashion-mnist.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';
import { postJson, ROOT, startTestServer } from '../server/helpers.js';

// Page functions run in the browser. This file is type-checked without the DOM library (it would
// retype fetch for every Node test), so the browser globals they use are declared loosely here.
declare const document: any, window: any, MutationObserver: any, getComputedStyle: any;

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Screenshots are test artifacts (not committed); .ci/run leaves them under .test-results/. */
const SHOTS = join(ROOT, '.test-results', 'playground');

let server: RunningServer;
let browser: Browser;
let page: Page;
let dir: string;
let png: Buffer;
/** Its 784 grey levels. */
let pixels: Uint8Array;
/** Every URL the page asked for: the page must load nothing from anywhere else. */
const requested: string[] = [];
/** The solve requests the page sent (path and Accept header): one stream per solve, no replays. */
const solves: { path: string; accept: string }[] = [];
const consoleErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  dir = await mkdtemp(join(tmpdir(), 'deq-playground-'));
  await mkdir(SHOTS, { recursive: true });
  // A Fashion-MNIST test image (the first of the committed slice: an ankle boot) as a PNG file.
  const set = await readFashionMnist('test', FASHION_MNIST_SLICE);
  pixels = set.images.slice(0, 784);
  png = await sharp(Buffer.from(pixels), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
  await writeFile(join(dir, 'boot.png'), png);
  await writeFile(join(dir, 'drawing.svg'), '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28" fill="white"/></svg>');
  server = await startServer(loadConfig([], {}, { port: 0, host: '127.0.0.1', modelsDir: join(ROOT, 'models'), workers: 2, logLevel: 'silent', maxIterCap: 100_000 }));
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
  page.on('request', (r) => {
    requested.push(r.url());
    const path = new URL(r.url()).pathname;
    if (/\/(classify|score|predict)$/.test(path)) solves.push({ path, accept: r.headers().accept ?? '' });
  });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${server.url}/playground/`);
  await page.waitForSelector('body[data-ready="true"]');
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

/** The points of a drawn curve, read back from the chart's SVG. */
async function curve(series: string): Promise<{ iteration: number; residual: number }[]> {
  const titles = await page.locator(`g[data-series^="${series}"] circle title`).allTextContents();
  return titles.map((t) => {
    const m = /iteration (\d+), residual (\S+)$/.exec(t)!;
    return { iteration: Number(m[1]), residual: Number(m[2]) };
  });
}

/** A solve's iteration events, fetched here as the page fetches them: residuals per window (or per sample). */
async function streamed(url: string, init: RequestInit, key: (x: any) => number = (x) => x.sample): Promise<Map<number, number[]>> {
  const res = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), accept: 'text/event-stream' } });
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const curves = new Map<number, number[]>();
  for (const block of (await res.text()).split('\n\n')) {
    if (!block.startsWith('event: iteration')) continue;
    for (const x of JSON.parse(block.slice(block.indexOf('data: ') + 6)).samples) curves.set(key(x), [...(curves.get(key(x)) ?? []), x.residual]);
  }
  return curves;
}

/** Drawn residuals (3 significant digits in the chart's tooltips) against the server's. */
function expectSameCurve(drawn: { iteration: number; residual: number }[], residuals: number[], what: string): void {
  expect(drawn.map((p) => p.iteration), what).toEqual(residuals.map((_, i) => i + 1));
  drawn.forEach((p, i) => expect(Math.abs(p.residual - residuals[i]) / residuals[i], `${what}, iteration ${i + 1}`).toBeLessThan(0.006));
}

async function waitForCurve(series: string, points: number): Promise<void> {
  await page.waitForFunction(([s, n]) => Number(document.querySelector(`g[data-series^="${s}"]`)?.getAttribute('data-points') ?? 0) >= Number(n), [series, points] as const, { timeout: 60_000 });
}

describe('the playground', () => {
  it('lists the models with their provenance', async () => {
    const rows = await page.locator('#models tbody tr').allTextContents();
    expect(rows).toHaveLength(3);
    const jr = rows.find((r) => r.startsWith('fashion-mnist-jr'))!;
    expect(jr).toContain('test accuracy 93.22%');
    expect(jr).toContain('yes (weight 2.5)');
    expect(rows.find((r) => r.startsWith('fashion-mnist-plain'))).toContain('no');
    expect(rows.find((r) => r.startsWith('brown-lm-jr'))).toContain('test perplexity 127.79');
  });

  it('classifies an uploaded Fashion-MNIST image: the API\'s label, the image the model saw, and the curve from its event stream', async () => {
    await page.selectOption('#model', 'fashion-mnist-plain');
    solves.length = 0;
    await page.setInputFiles('#file', join(dir, 'boot.png'));
    await page.waitForSelector('#predictions li');
    const api: any = await (await fetch(`${server.url}/v1/models/fashion-mnist-plain/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) })).json();
    const shown = await page.locator('#predictions li').first().getAttribute('data-label');
    expect(shown).toBe(api.label);
    expect(await page.locator('#predictions li').count()).toBe(5);

    await waitForCurve('fashion-mnist-plain', api.solver.iterations);
    // One point per iteration: the residuals the solver traced, from one streamed request (no replays).
    const traced: any = await (await fetch(`${server.url}/v1/models/fashion-mnist-plain/classify?trace=true`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) })).json();
    expect(api.solver.iterations).toBeGreaterThan(3);
    expectSameCurve(await curve('fashion-mnist-plain'), traced.solver.trace[0].residual, 'plain');
    expect(solves).toEqual([{ path: '/v1/models/fashion-mnist-plain/classify', accept: 'text/event-stream' }]);

    // The 28×28 the server preprocessed, drawn back to grey levels: the uploaded pixels.
    const seen: number[] = await page.evaluate(() => {
      const c = document.getElementById('seen') as any;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      return Array.from({ length: c.width * c.height }, (_, i) => d[4 * i]);
    });
    expect(seen).toHaveLength(784);
    let worst = 0;
    for (let i = 0; i < 784; i++) worst = Math.max(worst, Math.abs(seen[i] - pixels[i]));
    expect(worst).toBeLessThanOrEqual(1);
    await shot('classify');
  });

  it('runs JR against plain on the same image: two curves, JR under the tolerance in fewer iterations', async () => {
    await page.selectOption('#model', 'fashion-mnist-jr');
    await page.click('#clear-chart');
    solves.length = 0;
    await page.click('#compare');
    const answers = await Promise.all(['fashion-mnist-jr', 'fashion-mnist-plain'].map(async (m) =>
      (await fetch(`${server.url}/v1/models/${m}/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) })).json() as Promise<any>));
    await waitForCurve('fashion-mnist-jr', answers[0].solver.iterations);
    await waitForCurve('fashion-mnist-plain', answers[1].solver.iterations);
    const tol = answers[0].solver.tol;
    const firstBelow = (pts: { iteration: number; residual: number }[]) => pts.find((p) => p.residual < tol)?.iteration ?? Infinity;
    const jr = await curve('fashion-mnist-jr');
    const plain = await curve('fashion-mnist-plain');
    expect(jr.length).toBeGreaterThan(1);
    expect(plain.length).toBeGreaterThan(1);
    expect(firstBelow(jr)).toBeLessThan(firstBelow(plain));
    expect(firstBelow(jr)).toBe(answers[0].solver.iterations);
    // Each curve is its own stream's iterations, one request per model.
    for (const [name, drawn] of [['fashion-mnist-jr', jr], ['fashion-mnist-plain', plain]] as const) {
      const events = await streamed(`${server.url}/v1/models/${name}/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });
      expectSameCurve(drawn, events.get(0)!, name);
    }
    expect(solves.map((r) => r.path).sort()).toEqual(['/v1/models/fashion-mnist-jr/classify', '/v1/models/fashion-mnist-plain/classify']);
    expect(solves.every((r) => r.accept === 'text/event-stream')).toBe(true);
    await expect.poll(() => page.locator('#solve-stats').textContent()).toMatch(/fashion-mnist-jr says .* reached tol/);
    await shot('compare');
    // The README's picture (PLAYGROUND_README_SHOT=docs/playground.png): the image panel and the
    // two curves, scaled down and palette-coded so the committed file stays small.
    if (process.env.PLAYGROUND_README_SHOT) {
      const from = (await page.locator('#image-panel').boundingBox())!;
      const to = (await page.locator('#solve-stats').boundingBox())!;
      const clip = { x: from.x - 8, y: from.y - 8, width: from.width + 16, height: to.y + to.height - from.y + 16 };
      const raw = await page.screenshot({ clip });
      await sharp(raw).resize({ width: 760 }).png({ palette: true, colours: 64, compressionLevel: 9 }).toFile(process.env.PLAYGROUND_README_SHOT);
    }
  });

  it('scores a sentence: shaded tokens as /score gives them, <unk> marked, perplexity shown', async () => {
    await page.selectOption('#model', 'brown-lm-jr');
    const text = 'The jury praised the zyxwvut administration of the city.';
    await page.fill('#text', text);
    await page.click('#score');
    await page.waitForSelector('#tokens .tok');
    const api: any = await (await postJson(`${server.url}/v1/models/brown-lm-jr/score`, { text })).json();
    const tokens = api.results[0].tokens as { token: string; logprob: number; unk: boolean }[];
    const shown = await page.locator('#tokens .tok').evaluateAll((els) => els.map((e) => ({
      token: e.textContent, logprob: Number((e as any).dataset.logprob), unk: e.classList.contains('unk'), bg: getComputedStyle(e).backgroundColor,
    })));
    expect(shown.map((t) => t.token)).toEqual(tokens.map((t) => t.token));
    expect(shown.map((t) => t.unk)).toEqual(tokens.map((t) => t.unk));
    expect(tokens.some((t) => t.unk)).toBe(true);
    for (let i = 0; i < tokens.length; i++) expect(shown[i].logprob).toBeCloseTo(tokens[i].logprob, 5);
    // The least probable token is shaded darker than the most probable one.
    const lum = (bg: string) => bg.match(/\d+/g)!.slice(0, 3).map(Number).reduce((a, b) => a + b, 0);
    const order = tokens.map((t, i) => [t.logprob, i] as const).sort((a, b) => a[0] - b[0]);
    expect(lum(shown[order[0][1]].bg)).toBeLessThan(lum(shown[order.at(-1)![1]].bg));
    await expect.poll(() => page.locator('#text-stats').textContent()).toContain(`perplexity ${api.results[0].perplexity.toFixed(1)}`);
    await waitForCurve('brown-lm-jr', api.results[0].solver.iterations);
    await shot('score');
  });

  it('draws one residual curve per scoring window, each from the /score stream', async () => {
    await page.selectOption('#model', 'brown-lm-jr');
    await page.click('#clear-chart');
    // About 100 tokens: several 64-token windows (stride 32).
    const text = Array.from({ length: 6 }, () => 'The jury said it did find that the city of Atlanta was well run and that the election was fair.').join(' ');
    await page.fill('#text', text);
    await page.click('#score');
    const api: any = await (await postJson(`${server.url}/v1/models/brown-lm-jr/score`, { text })).json();
    const windows: number = api.results[0].windows;
    expect(windows).toBeGreaterThan(2);
    const perWindow = await streamed(`${server.url}/v1/models/brown-lm-jr/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) }, (x) => x.window);
    expect([...perWindow.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: windows }, (_, w) => w));
    await expect.poll(() => page.locator('#chart g[data-series^="brown-lm-jr"]').count(), { timeout: 60_000 }).toBe(windows);
    for (let w = 0; w < windows; w++) {
      const name = (await page.locator('#chart g[data-series^="brown-lm-jr"]').nth(w).getAttribute('data-series'))!;
      expect(name).toMatch(new RegExp(`· window ${w}$`));
      await waitForCurve(name, perWindow.get(w)!.length);
      expectSameCurve(await curve(name), perWindow.get(w)!, name);
    }
    await expect.poll(() => page.locator('#solve-stats').textContent()).toContain(`${windows} windows`);
    await shot('score-windows');
  });

  it('draws a long solve while it runs; Stop and a replacing run close the stream, and the server stops solving', async () => {
    await page.selectOption('#model', 'fashion-mnist-plain');
    await page.click('#clear-chart');
    // Fixed-point iteration to an absolute tolerance float32 never reaches: it runs to max_iter.
    await page.selectOption('#method', 'fixed-point');
    await page.selectOption('#stop-mode', 'abs');
    await page.fill('#tol', '1e-8');
    await page.fill('#max-iter', '100000');
    const count = (k = 0) => page.evaluate((i) => Number(document.querySelectorAll('#chart g[data-series]')[i]?.getAttribute('data-points') ?? 0), k);
    await page.setInputFiles('#file', join(dir, 'boot.png'));
    // Points arrive while there is no answer yet: the curve grows with the stream.
    await page.waitForFunction(() => Number(document.querySelector('#chart g[data-series]')?.getAttribute('data-points') ?? 0) >= 20, undefined, { timeout: 60_000 });
    expect(await page.locator('#predictions li').count()).toBe(0);
    const early = await count();
    await page.waitForFunction((n) => Number(document.querySelector('#chart g[data-series]')?.getAttribute('data-points') ?? 0) > n + 20, early, { timeout: 60_000 });
    expect(await page.locator('#predictions li').count()).toBe(0);
    expect(server.state.pool.inFlight()).toBe(1);

    // A new upload replaces the run: the first stream closes, the second one draws.
    await page.setInputFiles('#file', join(dir, 'boot.png'));
    await page.waitForFunction(() => Number(document.querySelectorAll('#chart g[data-series]')[1]?.getAttribute('data-points') ?? 0) >= 20, undefined, { timeout: 60_000 });
    const first = await count(0);
    await expect.poll(() => server.state.pool.inFlight(), { timeout: 15_000 }).toBe(1);

    // Stop: no answer, no error, the curve stops growing, and the server's worker is free.
    await page.click('#stop');
    await expect.poll(() => server.state.pool.inFlight(), { timeout: 15_000 }).toBe(0);
    await expect.poll(() => page.locator('#solve-stats').textContent()).toMatch(/^Stopped before the answer/);
    const stopped = await count(1);
    await page.waitForTimeout(500);
    expect(await count(1)).toBe(stopped);
    expect(await count(0)).toBe(first);
    expect(stopped).toBeLessThan(100_000);
    expect(await page.locator('#error').isHidden()).toBe(true);
    expect(await page.locator('#predictions li').count()).toBe(0);
    await shot('stopped');
    await page.click('#defaults');
    await page.click('#clear-chart');
  });

  it('shows the server\'s error message and code for an SVG upload and for an oversized image', async () => {
    await page.selectOption('#model', 'fashion-mnist-jr');
    await page.setInputFiles('#file', join(dir, 'drawing.svg'));
    await page.waitForSelector('#error:not([hidden])');
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(await readFile(join(dir, "drawing.svg")))], { type: 'image/svg+xml' }), 'drawing.svg');
    const res = await fetch(`${server.url}/v1/models/fashion-mnist-jr/classify`, { method: 'POST', body: form });
    const api: any = await res.json();
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(await page.locator('#error-code').textContent()).toBe(api.code);
    expect(await page.locator('#error-message').textContent()).toBe(api.error);
    // The last image's answer is gone: nothing on show belongs to the refused file.
    expect(await page.locator('#predictions li').count()).toBe(0);

    // An image over --image-limit (10 MB by default): refused by size, before any decoding.
    const big = Buffer.concat([png, Buffer.alloc(server.state.config.imageLimitBytes + 1024)]);
    await writeFile(join(dir, 'big.png'), big);
    await page.setInputFiles('#file', join(dir, 'big.png'));
    await page.waitForFunction(() => document.getElementById('error-code')?.textContent === 'DEQ_ERR_PAYLOAD_TOO_LARGE');
    const bigForm = new FormData();
    bigForm.append('image', new Blob([new Uint8Array(big)], { type: 'image/png' }), 'big.png');
    const bigApi: any = await (await fetch(`${server.url}/v1/models/fashion-mnist-jr/classify`, { method: 'POST', body: bigForm })).json();
    expect(bigApi.code).toBe('DEQ_ERR_PAYLOAD_TOO_LARGE');
    expect(await page.locator('#error-message').textContent()).toBe(bigApi.error);
    await shot('error');
  });

  it('classifies a drawing: the pad\'s strokes reach the model', async () => {
    await page.selectOption('#model', 'fashion-mnist-jr');
    const pad = (await page.locator('#pad').boundingBox())!;
    const at = (fx: number, fy: number) => [pad.x + fx * pad.width, pad.y + fy * pad.height] as const;
    // A rough trouser: two legs and a waistband.
    for (const [[x0, y0], [x1, y1]] of [[[0.3, 0.15], [0.7, 0.15]], [[0.32, 0.15], [0.36, 0.9]], [[0.68, 0.15], [0.64, 0.9]]] as const) {
      await page.mouse.move(...at(x0, y0));
      await page.mouse.down();
      await page.mouse.move(...at(x1, y1), { steps: 8 });
      await page.mouse.up();
    }
    await page.click('#classify-drawing');
    await page.waitForSelector('#predictions li');
    await page.waitForSelector('#seen[data-drawn="true"]');
    const grey: number[] = await page.evaluate(() => {
      const c = document.getElementById('seen') as any;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      return Array.from({ length: c.width * c.height }, (_, i) => d[4 * i]);
    });
    // The model saw light strokes on a dark ground: the legs' columns are lit, the gap between them is not.
    expect(grey.filter((g) => g > 200).length).toBeGreaterThan(20);
    expect(grey.filter((g) => g < 20).length).toBeGreaterThan(300);
    expect(grey[14 * 28 + 14]).toBeLessThan(20);
  });

  it('has no axe-core violations of serious or critical impact, with the image and the text panel in use', async () => {
    // Evaluated through the devtools protocol: the page's CSP admits no injected <script>.
    const require = createRequire(import.meta.url);
    await page.evaluate(await readFile(require.resolve('axe-core/axe.min.js'), 'utf8'));
    // The image panel (an error, predictions and curves on show), then the text panel (its shaded tokens).
    for (const model of ['fashion-mnist-jr', 'brown-lm-jr']) {
      await page.selectOption('#model', model);
      const result: any = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
      expect(result.testEngine.name).toBe('axe-core');
      expect(result.passes.length + result.incomplete.length + result.violations.length).toBeGreaterThan(10);
      const bad = result.violations.filter((v: any) => v.impact === 'serious' || v.impact === 'critical')
        .map((v: any) => `${v.id} (${v.impact}): ${v.nodes.map((n: any) => n.target.join(' ')).join(', ')}`);
      expect(bad, model).toEqual([]);
    }
    expect(await page.locator('#tokens .tok').count()).toBeGreaterThan(5);
  });

  it('loads nothing from another host and logs no script error', () => {
    expect(requested.length).toBeGreaterThan(5);
    expect(requested.filter((u) => !u.startsWith(server.url) && !u.startsWith('blob:') && !u.startsWith('data:'))).toEqual([]);
    expect(consoleErrors.filter((e) => !/status of 4\d\d/.test(e))).toEqual([]);
  });

  it('upload is keyboard-operable and every control has a label', async () => {
    await page.selectOption('#model', 'fashion-mnist-jr');
    await page.evaluate(() => document.getElementById('predictions').replaceChildren());
    // Listen before any key is pressed: Playwright turns on file-chooser interception only when
    // the first listener subscribes, asynchronously, and a Space that wins that race opens an
    // uninterceptable chooser (CI saw this once).
    const chooserOpened = page.waitForEvent('filechooser');
    await page.focus('#model');
    let reached = false;
    for (let i = 0; i < 30 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement?.id === 'file');
    }
    expect(reached).toBe(true);
    // Space on the focused control opens the file chooser; the chosen file is classified.
    await page.keyboard.press('Space');
    const chooser = await chooserOpened;
    await chooser.setFiles(join(dir, 'boot.png'));
    await page.waitForSelector('#predictions li');
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
      .filter((e) => (e as any).labels?.length === 0 && !e.getAttribute('aria-label')).map((e) => e.id));
    expect(unlabelled).toEqual([]);
  });
});

describe('a tensor model in the playground', () => {
  it('prefills the JSON editor from the v2 metadata and shows what /predict answers', async () => {
    const t = await startTestServer({}, ['tiny-tensor']);
    const p = await browser.newPage();
    try {
      await p.goto(`${t.url}/playground/`);
      await p.waitForSelector('body[data-ready="true"]');
      expect(await p.isVisible('#tensor-panel')).toBe(true);
      const inputs = JSON.parse(await p.inputValue('#tensor-json'));
      const meta: any = await (await fetch(`${t.url}/v2/models/tiny-tensor`)).json();
      expect(Object.keys(inputs).sort()).toEqual(meta.inputs.map((i: any) => i.name).sort());
      await p.click('#predict');
      await p.waitForFunction(() => (document.getElementById('tensor-out')!.textContent ?? '').length > 0);
      const shown = JSON.parse((await p.textContent('#tensor-out'))!);
      const api: any = await (await postJson(`${t.url}/v1/models/tiny-tensor/predict`, { inputs })).json();
      expect(shown.outputs).toEqual(api.outputs);
      expect(shown.shapes).toEqual(api.shapes);
      await p.waitForFunction((n) => Number(document.querySelector('g[data-series^="tiny-tensor"]')?.getAttribute('data-points') ?? 0) >= n, api.solver.iterations);
    } finally {
      await p.close();
      await t.cleanup();
    }
  });
});

describe('the interactive docs', () => {
  it('/docs/ renders every operation of /openapi.json, with nothing fetched from another host', async () => {
    const p = await browser.newPage();
    const urls: string[] = [];
    const errors: string[] = [];
    p.on('request', (r) => urls.push(r.url()));
    p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    p.on('pageerror', (e) => errors.push(String(e)));
    try {
      await p.goto(`${server.url}/docs/`);
      const doc: any = await (await fetch(`${server.url}/openapi.json`)).json();
      const operations = Object.values(doc.paths).reduce((n: number, item: any) => n + Object.keys(item).length, 0);
      await p.waitForFunction((n) => document.querySelectorAll('.opblock').length >= n, operations, { timeout: 60_000 });
      expect(await p.locator('.opblock').count()).toBe(operations);
      expect(urls.filter((u) => !u.startsWith(server.url) && !u.startsWith('data:') && !u.startsWith('blob:'))).toEqual([]);
      // Nothing refused by the page's Content-Security-Policy, no script error.
      expect(errors).toEqual([]);
      await p.screenshot({ path: join(SHOTS, 'docs.png') });
    } finally {
      await p.close();
    }
  });
});
