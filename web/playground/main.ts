import { api, ApiError, type Classification, type ModelInfo, type OnIteration, type SolverParams, type SolverSummary } from './api.js';
import { ResidualChart } from './chart.js';
import { firstBelow, streamSource, type IterationSample, type ResidualPoint } from './residual.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

let models: ModelInfo[] = [];
let chart: ResidualChart;
let lastImage: Blob | null = null;

/** The run in progress: a new run, "Stop" or another model cancels it (its stream closes, the server stops solving). */
let running: AbortController | null = null;
let active = 0;

function stopRun(): void {
  running?.abort();
  running = null;
}

/**
 * Runs an action with the page's buttons disabled (all but Stop); shows an error the server
 * gave in the alert region. A run replaced or stopped before its answer shows no error.
 */
async function busy(action: (signal: AbortSignal) => Promise<void>): Promise<void> {
  stopRun();
  const run = new AbortController();
  running = run;
  const buttons = [...document.querySelectorAll<HTMLButtonElement>('main button:not(#stop)')];
  showError(null);
  document.body.setAttribute('aria-busy', 'true');
  for (const b of buttons) b.disabled = true;
  $<HTMLButtonElement>('stop').disabled = false;
  active++;
  try {
    await action(run.signal);
  } catch (err) {
    if (!run.signal.aborted) showError(err);
    // Stopped (not replaced by a newer run, which has the line now).
    else if (running === null) $('solve-stats').textContent = 'Stopped before the answer: the request was cancelled, and the server stopped solving.';
  } finally {
    // A run that failed in one of its streams (JR against plain runs two) closes the others.
    run.abort();
    if (running === run) running = null;
    // Another run may have started meanwhile: the last one to end gives the buttons back.
    if (--active === 0) {
      for (const b of buttons) b.disabled = false;
      $<HTMLButtonElement>('stop').disabled = true;
      document.body.removeAttribute('aria-busy');
    }
  }
}

function showError(err: unknown): void {
  const box = $('error');
  if (err === null) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  box.hidden = false;
  box.replaceChildren();
  if (err instanceof ApiError) {
    const code = document.createElement('code');
    code.id = 'error-code';
    code.textContent = err.code ?? `HTTP ${err.status}`;
    const msg = document.createElement('span');
    msg.id = 'error-message';
    msg.textContent = err.message;
    box.append('The server refused the request: ', code, ` (HTTP ${err.status}) `, msg);
  } else {
    box.textContent = `Something went wrong: ${err instanceof Error ? err.message : String(err)}`;
  }
  box.scrollIntoView({ block: 'nearest' });
}

const current = (): ModelInfo => models.find((m) => m.name === $<HTMLSelectElement>('model').value)!;

function solverParams(): SolverParams {
  return {
    solver: $<HTMLSelectElement>('method').value,
    tol: Number($<HTMLInputElement>('tol').value),
    max_iter: Number($<HTMLInputElement>('max-iter').value),
    stop_mode: $<HTMLSelectElement>('stop-mode').value,
  };
}

function fillOptions(select: HTMLSelectElement, values: readonly string[], chosen: string): void {
  select.replaceChildren(...values.map((v) => new Option(v, v, v === chosen, v === chosen)));
}

function setSolverControls(m: ModelInfo): void {
  const d = m.solver_defaults;
  fillOptions($('method'), m.caps.solver, d.method);
  fillOptions($('stop-mode'), m.caps.stop_mode, d.stop_mode);
  const tol = $<HTMLInputElement>('tol');
  tol.min = String(m.caps.tol[0]);
  tol.max = String(m.caps.tol[1]);
  tol.value = String(d.tol);
  const it = $<HTMLInputElement>('max-iter');
  it.min = String(m.caps.max_iter[0]);
  it.max = String(m.caps.max_iter[1]);
  it.value = String(d.max_iter);
}

/** The dataset and training facts a bundle's manifest records, as the table shows them. */
function provenance(m: ModelInfo): { dataset: string; jr: string; quality: string } {
  const p = m.provenance ?? {};
  const metrics = p.metrics ?? {};
  const jrWeight = typeof p.jr_weight === 'number' ? p.jr_weight : undefined;
  const quality = metrics.test_accuracy !== undefined ? `test accuracy ${(metrics.test_accuracy * 100).toFixed(2)}%`
    : metrics.test_ppl_python !== undefined ? `test perplexity ${metrics.test_ppl_python}`
    : metrics.val_ppl_python !== undefined ? `validation perplexity ${metrics.val_ppl_python}`
    : '—';
  return {
    dataset: typeof p.dataset === 'string' ? p.dataset.split(';')[0] : '—',
    jr: jrWeight === undefined ? '—' : jrWeight > 0 ? `yes (weight ${jrWeight})` : 'no',
    quality,
  };
}

function renderModels(): void {
  const rows = models.map((m) => {
    const tr = document.createElement('tr');
    const d = m.solver_defaults;
    const p = provenance(m);
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = m.name;
    tr.append(th, ...[m.task, `${d.method}, tol ${d.tol} (${d.stop_mode}), ≤ ${d.max_iter} iterations`, p.dataset, p.jr, p.quality].map((t) => {
      const td = document.createElement('td');
      td.textContent = t;
      return td;
    }));
    return tr;
  });
  $('models').querySelector('tbody')!.replaceChildren(...rows);
  fillOptions($('model'), models.map((m) => m.name), (models.find((m) => m.task === 'image-classification') ?? models[0])?.name ?? '');
}

/** The JR and plain models of one dataset, when the server serves both. */
function jrPair(): { jr: ModelInfo; plain: ModelInfo } | null {
  const images = models.filter((m) => m.task === 'image-classification' && typeof m.provenance?.jr_weight === 'number');
  for (const jr of images.filter((m) => m.provenance.jr_weight > 0)) {
    const plain = images.find((m) => m.provenance.jr_weight === 0 && m.provenance.dataset === jr.provenance.dataset);
    if (plain) return { jr, plain };
  }
  return null;
}

async function onModelChange(): Promise<void> {
  const m = current();
  if (!m) return;
  stopRun();
  setSolverControls(m);
  $('image-panel').hidden = m.task !== 'image-classification';
  $('text-panel').hidden = m.task !== 'language-model';
  $('tensor-panel').hidden = m.task !== 'tensor';
  $('compare').hidden = jrPair() === null;
  if (m.task === 'tensor') await busy(async () => prefillTensor(m));
}

// ---- curves

const curveName = (model: string, s: SolverParams) => `${model} · ${s.solver} tol ${s.tol}`;

/**
 * Runs a solve as a stream and draws its curves as the iterations arrive: one curve per name
 * `curveOf` gives a row (a curve is added on its first point). Resolves with the answer and
 * the points of each curve.
 */
async function drawLive<T>(solve: (onIteration: OnIteration, signal?: AbortSignal) => Promise<T>, curveOf: (s: IterationSample) => string, tol: number, signal: AbortSignal): Promise<{ answer: T; curves: Map<string, ResidualPoint[]> }> {
  const source = streamSource(solve, curveOf);
  $('chart-source').textContent = source.description;
  const curves = new Map<string, { push: (p: ResidualPoint) => void; points: ResidualPoint[] }>();
  const answer = await source.run((name, p) => {
    let c = curves.get(name);
    if (!c) curves.set(name, (c = { push: chart.add(name, tol), points: [] }));
    c.points.push(p);
    c.push(p);
  }, signal);
  return { answer, curves: new Map([...curves].map(([k, v]) => [k, v.points])) };
}

function describeSolve(name: string, s: SolverSummary): string {
  const r = s.residual === null ? 'no finite residual' : `residual ${s.residual.toExponential(2)}`;
  return `${name}: ${s.converged ? 'converged' : s.diverged ? 'diverged' : 'stopped unconverged'} after ${s.iterations} iterations, ${r} (tol ${s.tol}, ${s.stop_mode}).`;
}

// ---- images

function showPredictions(r: Classification): void {
  const items = r.labels.map((l) => {
    const li = document.createElement('li');
    li.dataset.label = l.label;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = l.label;
    const bar = document.createElement('span');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.style.width = `${(l.probability * 100).toFixed(1)}%`;
    bar.append(fill);
    const pct = document.createElement('span');
    pct.className = 'pct';
    pct.textContent = `${(l.probability * 100).toFixed(1)}%`;
    li.append(name, bar, pct);
    return li;
  });
  $('predictions').replaceChildren(...items);
}

/** The tensor the server preprocessed, mapped back through its normalization to grey levels. */
function showSeen(m: ModelInfo, input: Classification['input']): void {
  const canvas = $<HTMLCanvasElement>('seen');
  if (!input || !m.preprocess) return;
  const [c, h, w] = input.shape;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    for (let k = 0; k < 3; k++) {
      const ch = c === 1 ? 0 : k;
      const v = input.data[ch * w * h + i] * m.preprocess.std[ch] + m.preprocess.mean[ch];
      img.data[4 * i + k] = Math.max(0, Math.min(255, Math.round(v * 255)));
    }
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  canvas.dataset.drawn = 'true';
}

async function runImage(image: Blob, signal: AbortSignal): Promise<void> {
  lastImage = image;
  // A refused image must not leave the last image's answer on show.
  $('predictions').replaceChildren();
  $('solve-stats').textContent = '';
  const seen = $<HTMLCanvasElement>('seen');
  seen.getContext('2d')!.clearRect(0, 0, seen.width, seen.height);
  delete seen.dataset.drawn;
  const m = current();
  const s = solverParams();
  const name = curveName(m.name, s);
  $('solve-stats').textContent = `${m.name}: solving…`;
  const { answer: r } = await drawLive((on, sig) => api.classify(m.name, image, s, { preprocessed: true, topK: 5 }, on, sig), () => name, s.tol!, signal);
  showPredictions(r);
  showSeen(m, r.input);
  $('solve-stats').textContent = describeSolve(m.name, r.solver);
}

async function compare(signal: AbortSignal): Promise<void> {
  const pair = jrPair();
  if (!pair || !lastImage) throw new Error('choose or draw an image first');
  const image = lastImage;
  const s = solverParams();
  // Both solves at once, each curve drawn from its own stream.
  const runs = [pair.jr, pair.plain].map(async (m) => {
    const name = curveName(m.name, s);
    const { answer: r, curves } = await drawLive((on, sig) => api.classify(m.name, image, s, {}, on, sig), () => name, s.tol!, signal);
    return { m, r, at: firstBelow(curves.get(name) ?? [], s.tol!) };
  });
  const [jr, plain] = await Promise.all(runs);
  const said = (x: typeof jr) => `${x.m.name} says ${x.r.label} and ${x.at === null ? `did not reach tol ${s.tol} in ${x.r.solver.iterations} iterations` : `reached tol ${s.tol} at iteration ${x.at}`}`;
  $('solve-stats').textContent = `${said(jr)}; ${said(plain)}.`;
}

function setUpDrawing(): void {
  const pad = $<HTMLCanvasElement>('pad');
  const ctx = pad.getContext('2d')!;
  const blank = () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, pad.width, pad.height);
  };
  blank();
  let drawing = false;
  const at = (e: PointerEvent) => {
    const b = pad.getBoundingClientRect();
    return [((e.clientX - b.left) * pad.width) / b.width, ((e.clientY - b.top) * pad.height) / b.height] as const;
  };
  pad.addEventListener('pointerdown', (e) => {
    drawing = true;
    pad.setPointerCapture(e.pointerId);
    ctx.beginPath();
    ctx.moveTo(...at(e));
  });
  pad.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    ctx.lineTo(...at(e));
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 22;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.stroke();
  });
  pad.addEventListener('pointerup', () => (drawing = false));
  $('clear-drawing').addEventListener('click', blank);
  $('classify-drawing').addEventListener('click', () => busy(async (signal) => {
    const blob = await new Promise<Blob | null>((resolve) => pad.toBlob(resolve, 'image/png'));
    if (blob) await runImage(blob, signal);
  }));
}

function setUpUpload(): void {
  const file = $<HTMLInputElement>('file');
  file.addEventListener('change', () => {
    const f = file.files?.[0];
    // Emptied, so that choosing the same file again (after changing the solver) runs it again.
    file.value = '';
    if (f) void busy((signal) => runImage(f, signal));
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer?.files[0];
    if (f) void busy((signal) => runImage(f, signal));
  });
}

// ---- text

async function scoreText(signal: AbortSignal): Promise<void> {
  const m = current();
  const s = solverParams();
  const text = $<HTMLTextAreaElement>('text').value;
  // One curve per window: the stream names each iteration's window.
  const name = curveName(m.name, s);
  $('solve-stats').textContent = `${m.name}: solving…`;
  const { answer: r } = await drawLive((on, sig) => api.score(m.name, text, s, on, sig), (x) => `${name} · window ${x.window ?? x.sample}`, s.tol!, signal);
  const res = r.results[0];
  const spans = res.tokens.map((t) => {
    const span = document.createElement('span');
    span.className = t.unk ? 'tok unk' : 'tok';
    // Lighter = more probable; the text stays dark on every shade (contrast ≥ 4.5).
    const surprise = Math.min(1, -t.logprob / 12);
    span.style.backgroundColor = `hsl(28 90% ${Math.round(96 - 38 * surprise)}%)`;
    span.textContent = t.token;
    span.title = `${t.unk ? '<unk> ' : ''}log-probability ${t.logprob.toFixed(3)}`;
    span.dataset.logprob = String(t.logprob);
    span.dataset.unk = String(t.unk);
    return span;
  });
  const tokens = $('tokens');
  tokens.replaceChildren();
  spans.forEach((sp, i) => tokens.append(...(i ? [' ', sp] : [sp])));
  $('text-stats').textContent = `${res.token_count} tokens (${res.unk_count} <unk>) in ${res.windows} window(s): total log-probability ${res.total_logprob.toFixed(2)}, perplexity ${res.perplexity.toFixed(1)}.`;
  $('solve-stats').textContent = describeSolve(m.name, res.solver) + (res.windows > 1 ? ` The summary is the worst of the ${res.windows} windows; the chart has one curve per window.` : '');
}

// ---- tensors

async function prefillTensor(m: ModelInfo): Promise<void> {
  const meta = await api.v2Metadata(m.name);
  // One sample: each input at its declared shape, free dims as 4, filled with zeros (ids: 1).
  const inputs = Object.fromEntries(meta.inputs.map((t) => {
    const shape = t.shape.slice(1).map((d) => (d < 0 ? 4 : d));
    const fill = t.datatype.startsWith('INT') ? 1 : 0;
    const nest = (dims: number[]): unknown => (dims.length === 0 ? fill : Array.from({ length: dims[0] }, () => nest(dims.slice(1))));
    return [t.name, nest(shape)];
  }));
  $<HTMLTextAreaElement>('tensor-json').value = JSON.stringify(inputs);
}

async function runTensor(signal: AbortSignal): Promise<void> {
  const m = current();
  const s = solverParams();
  let inputs: unknown;
  try {
    inputs = JSON.parse($<HTMLTextAreaElement>('tensor-json').value);
  } catch (err) {
    throw new Error(`the inputs are not valid JSON: ${(err as Error).message}`);
  }
  const name = curveName(m.name, s);
  const { answer: r } = await drawLive((on, sig) => api.predict(m.name, inputs, s, on, sig), (x) => (x.sample === 0 ? name : `${name} · sample ${x.sample}`), s.tol!, signal);
  $('tensor-out').textContent = JSON.stringify({ outputs: r.outputs, shapes: r.shapes }, null, 1);
  $('solve-stats').textContent = describeSolve(m.name, r.solver);
}

// ---- start

async function start(): Promise<void> {
  chart = new ResidualChart($('chart'), $('chart-summary'));
  setUpDrawing();
  setUpUpload();
  $('model').addEventListener('change', () => void onModelChange());
  $('defaults').addEventListener('click', () => setSolverControls(current()));
  $('compare').addEventListener('click', () => busy(compare));
  $('score').addEventListener('click', () => busy(scoreText));
  $('predict').addEventListener('click', () => busy(runTensor));
  $('clear-chart').addEventListener('click', () => chart.clear());
  $('stop').addEventListener('click', stopRun);
  await busy(async () => {
    models = await api.models();
    renderModels();
  });
  await onModelChange();
  // The links lead nowhere on a server started with --openapi false.
  const docs = await fetch('/openapi.json', { method: 'HEAD' }).catch(() => null);
  $('doc-links').hidden = !docs?.ok;
  document.body.dataset.ready = 'true';
}

void start();
