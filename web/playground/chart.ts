import type { ResidualPoint } from './residual.js';

const SVG = 'http://www.w3.org/2000/svg';
const W = 640, H = 300;
const M = { left: 64, right: 16, top: 14, bottom: 42 };
const MAX_DOTS = 200, MAX_LEGEND = 12;
// Distinct in colour and in dash pattern, so a curve is told apart without colour too.
const STYLES = [
  { color: '#1f5fbf', dash: '' },
  { color: '#b3261e', dash: '7 4' },
  { color: '#1e7b34', dash: '2 3' },
  { color: '#7a3fb0', dash: '10 3 2 3' },
  { color: '#8a5a00', dash: '4 2' },
];

interface Series {
  name: string;
  points: ResidualPoint[];
  tol?: number;
  style: (typeof STYLES)[number];
}

/**
 * Residual against iteration, log-scale y, as SVG: curves are added and grow
 * point by point as their source delivers them; re-running adds a curve over the
 * old ones. Each curve is a <g data-series> with data-points, so a test (or a
 * screen reader's summary) can read what is drawn.
 */
export class ResidualChart {
  readonly svg: SVGSVGElement;
  #series: Series[] = [];
  #summary: HTMLElement;

  constructor(host: HTMLElement, summary: HTMLElement) {
    this.svg = document.createElementNS(SVG, 'svg');
    this.svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    this.svg.setAttribute('role', 'img');
    this.svg.setAttribute('aria-labelledby', summary.id);
    host.append(this.svg);
    this.#summary = summary;
    this.render();
  }

  /** Starts a new curve; returns the function that appends its points. */
  add(name: string, tol?: number): (p: ResidualPoint) => void {
    const s: Series = { name, points: [], tol, style: STYLES[this.#series.length % STYLES.length] };
    this.#series.push(s);
    this.render();
    return (p) => {
      s.points.push(p);
      this.#schedule();
    };
  }

  clear(): void {
    this.#series = [];
    this.render();
  }

  #pending = false;
  /** Points can arrive faster than frames (a stream of thousands of iterations): one render per frame. */
  #schedule(): void {
    if (this.#pending) return;
    this.#pending = true;
    requestAnimationFrame(() => {
      this.#pending = false;
      this.render();
    });
  }

  render(): void {
    const all = this.#series.flatMap((s) => s.points);
    const tols = this.#series.map((s) => s.tol).filter((t): t is number => t !== undefined);
    const ys = [...all.map((p) => p.residual), ...tols].filter((r) => r > 0 && Number.isFinite(r));
    const lo = Math.floor(Math.log10(ys.length ? Math.min(...ys) : 1e-4));
    const hi = Math.ceil(Math.log10(ys.length ? Math.max(...ys) : 1));
    const top = hi === lo ? hi + 1 : hi;
    const xMax = Math.max(5, ...all.map((p) => p.iteration));
    const x = (i: number) => M.left + ((W - M.left - M.right) * i) / xMax;
    const y = (r: number) => M.top + ((H - M.top - M.bottom) * (top - Math.log10(r))) / (top - lo);

    const parts: string[] = [];
    for (let d = lo; d <= top; d++) {
      parts.push(`<line class="grid" x1="${M.left}" x2="${W - M.right}" y1="${y(10 ** d)}" y2="${y(10 ** d)}"/>`);
      parts.push(`<text class="tick" x="${M.left - 6}" y="${y(10 ** d) + 4}" text-anchor="end">1e${d}</text>`);
    }
    const step = Math.max(1, Math.ceil(xMax / 10));
    for (let i = 0; i <= xMax; i += step) parts.push(`<text class="tick" x="${x(i)}" y="${H - M.bottom + 16}" text-anchor="middle">${i}</text>`);
    parts.push(`<line class="axis" x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}"/>`);
    parts.push(`<line class="axis" x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}"/>`);
    parts.push(`<text class="label" x="${(W + M.left) / 2}" y="${H - 6}" text-anchor="middle">iteration</text>`);
    parts.push(`<text class="label" transform="translate(14 ${(H - M.bottom + M.top) / 2}) rotate(-90)" text-anchor="middle">residual (log)</text>`);
    for (const t of new Set(tols)) parts.push(`<line class="tol" x1="${M.left}" x2="${W - M.right}" y1="${y(t)}" y2="${y(t)}"><title>tolerance ${t}</title></line>`);
    this.#series.forEach((s, k) => {
      const pts = s.points.filter((p) => p.residual > 0);
      const path = pts.map((p) => `${x(p.iteration).toFixed(1)},${y(p.residual).toFixed(1)}`).join(' ');
      // Dots (each with its value as a tooltip) while they can be told apart; past that, the line alone.
      const dots = pts.length > MAX_DOTS ? '' : pts.map((p) => `<circle cx="${x(p.iteration).toFixed(1)}" cy="${y(p.residual).toFixed(1)}" r="3"><title>${esc(s.name)}: iteration ${p.iteration}, residual ${p.residual.toExponential(2)}</title></circle>`).join('');
      const ly = M.top + 14 + 16 * k;
      // The legend names the first curves; the summary below the chart names them all.
      const legend = k < MAX_LEGEND ? `<line x1="${W - M.right - 300}" x2="${W - M.right - 276}" y1="${ly - 4}" y2="${ly - 4}" stroke-width="2" stroke-dasharray="${s.style.dash}"/>` +
        `<text class="legend" x="${W - M.right - 270}" y="${ly}" stroke="none">${esc(s.name)}</text>` : '';
      parts.push(`<g data-series="${esc(s.name)}" data-points="${pts.length}" stroke="${s.style.color}" fill="${s.style.color}">` +
        `<polyline fill="none" stroke-width="2" stroke-dasharray="${s.style.dash}" points="${path}"/>${dots}${legend}</g>`);
    });
    this.svg.innerHTML = parts.join('');
    this.#summary.textContent = this.#series.length === 0
      ? 'Residual against iteration: no solve yet.'
      : 'Residual against iteration (log scale): ' + this.#series.map((s) => {
        const last = s.points.at(-1);
        return last ? `${s.name}, ${s.points.length} points, ${last.residual.toExponential(2)} at iteration ${last.iteration}` : `${s.name}, waiting`;
      }).join('; ') + '.';
  }
}

function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
