// WebAssembly SIMD kernels for the solver's per-sample row algebra (AssemblyScript,
// compiled by `npm run build:wasm` into dist/solver-kernels.wasm).
//
// Every pointer is a byte offset into the imported memory, where SolverWorkspace
// lays out its buffers. Rows are float32, four to a v128, and the arithmetic is
// float32 too: the cell that produces f(z) is float32 already, and the float64
// the TypeScript reference carries costs a promote, a demote and half the lanes
// per element (measured: 3–4× slower kernels). Reductions stay accurate where it
// matters: each dot product or norm adds float32 partial sums over blocks of
// BLOCK elements, then adds the blocks in float64. Iterates agree with the
// reference within ~1e-6 relative per step (test/solver/wasm-kernel.test.ts
// holds them to 1e-5 after k steps, as the solver's contract does).
//
// Kernels that write a new iterate return 0 when every value of it is finite and
// NaN otherwise: all the caller needs to detect a blown-up step.

/** Elements per float32 partial sum before it is added in float64. */
const BLOCK: i32 = 512;

@inline function f64sum(v: v128): f64 {
  return <f64>f32x4.extract_lane(v, 0) + <f64>f32x4.extract_lane(v, 1)
    + (<f64>f32x4.extract_lane(v, 2) + <f64>f32x4.extract_lane(v, 3));
}
/** Nonzero lanes mark values that are not finite: x − x is +0 for finite x and NaN otherwise. */
@inline function bad(m: v128, v: v128): v128 {
  return v128.or(m, f32x4.sub(v, v));
}
@inline function bad1(m: bool, v: f32): bool {
  return m || v - v != 0;
}
/** 0 when no lane of the mask was marked, NaN otherwise. */
@inline function verdict(m: v128, tail: bool): f64 {
  return v128.any_true(m) || tail ? NaN : 0;
}
@inline function ld1(p: usize): f32 {
  return load<f32>(p);
}
@inline function st1(p: usize, v: f32): void {
  store<f32>(p, v);
}
@inline function end(k0: i32, quads: i32): i32 {
  return k0 + BLOCK < quads ? k0 + BLOCK : quads;
}

/** g = f(z) − z; out[0] = Σg², out[1] = Σf(z)². */
export function residual(z: usize, fz: usize, g: usize, n: i32, out: usize): void {
  let sg: f64 = 0, sf: f64 = 0;
  const quads = n & ~3;
  for (let k0 = 0; k0 < quads; k0 += BLOCK) {
    let gg = f32x4.splat(0), ff = f32x4.splat(0);
    for (let k = k0, e = end(k0, quads); k < e; k += 4) {
      const o = <usize>k << 2;
      const fv = v128.load(fz + o);
      const d = f32x4.sub(fv, v128.load(z + o));
      v128.store(g + o, d);
      gg = f32x4.add(gg, f32x4.mul(d, d));
      ff = f32x4.add(ff, f32x4.mul(fv, fv));
    }
    sg += f64sum(gg);
    sf += f64sum(ff);
  }
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    const f = ld1(fz + o);
    const d = f - ld1(z + o);
    st1(g + o, d);
    sg += <f64>d * d;
    sf += <f64>f * f;
  }
  store<f64>(out, sg);
  store<f64>(out, sf, 8);
}

/** 0 when every value of the row is finite, NaN otherwise. */
export function finite(p: usize, n: i32): f64 {
  let m = f32x4.splat(0);
  const quads = n & ~3;
  for (let k = 0; k < quads; k += 4) m = bad(m, v128.load(p + (<usize>k << 2)));
  let r = false;
  for (let k = quads; k < n; k++) r = bad1(r, ld1(p + (<usize>k << 2)));
  return verdict(m, r);
}

export function copy(dst: usize, src: usize, bytes: usize): void {
  memory.copy(dst, src, bytes);
}

/** Fixed point: z ← z + d·g. */
export function fixedPoint(z: usize, g: usize, d: f64, n: i32): f64 {
  const df = <f32>d, dv = f32x4.splat(df);
  let m = f32x4.splat(0);
  const quads = n & ~3;
  for (let k = 0; k < quads; k += 4) {
    const o = <usize>k << 2;
    const v = f32x4.add(v128.load(z + o), f32x4.mul(dv, v128.load(g + o)));
    v128.store(z + o, v);
    m = bad(m, v);
  }
  let r = false;
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    const v = ld1(z + o) + df * ld1(g + o);
    st1(z + o, v);
    r = bad1(r, v);
  }
  return verdict(m, r);
}

/** Broyden's first step: zPrev ← z, gPrev ← g, p ← g, z ← z + g. */
export function broydenStart(z: usize, g: usize, p: usize, zPrev: usize, gPrev: usize, n: i32): f64 {
  const bytes = <usize>n << 2;
  memory.copy(zPrev, z, bytes);
  memory.copy(gPrev, g, bytes);
  memory.copy(p, g, bytes);
  return fixedPoint(z, g, 1.0, n);
}

/**
 * p ← Δz = z − zPrev, then out[2j] = Uⱼ·Δz and out[2j+1] = Vⱼ·g for j < count
 * (float64). Blocked so that a block of Δz and g stays in L1 while every
 * stored pair streams past it once.
 */
export function broydenDots(z: usize, zPrev: usize, p: usize, g: usize, U: usize, V: usize, stride: usize, count: i32, n: i32, out: usize): void {
  for (let j = 0; j < 2 * count; j++) store<f64>(out + (<usize>j << 3), 0);
  const quads = n & ~3;
  for (let k0 = 0; k0 < quads; k0 += BLOCK) {
    const e = end(k0, quads);
    for (let k = k0; k < e; k += 4) {
      const o = <usize>k << 2;
      v128.store(p + o, f32x4.sub(v128.load(z + o), v128.load(zPrev + o)));
    }
    for (let j = 0; j < count; j++) {
      const uo = U + <usize>j * stride, vo = V + <usize>j * stride;
      let b0 = f32x4.splat(0), c0 = f32x4.splat(0);
      for (let k = k0; k < e; k += 4) {
        const o = <usize>k << 2;
        b0 = f32x4.add(b0, f32x4.mul(v128.load(uo + o), v128.load(p + o)));
        c0 = f32x4.add(c0, f32x4.mul(v128.load(vo + o), v128.load(g + o)));
      }
      const oj = out + (<usize>j << 4);
      store<f64>(oj, load<f64>(oj) + f64sum(b0));
      store<f64>(oj, load<f64>(oj, 8) + f64sum(c0), 8);
    }
  }
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    const d = ld1(z + o) - ld1(zPrev + o);
    st1(p + o, d);
    for (let j = 0; j < count; j++) {
      const jo = <usize>j * stride + o, oj = out + (<usize>j << 4);
      store<f64>(oj, load<f64>(oj) + <f64>ld1(U + jo) * d);
      store<f64>(oj, load<f64>(oj, 8) + <f64>ld1(V + jo) * ld1(g + o), 8);
    }
  }
}

/**
 * t = −Δz + Σⱼ bⱼ Vⱼ into s[n..2n) and q = g − Σⱼ cⱼ Uⱼ into s[0..n) (float32 rows),
 * with (bⱼ, cⱼ) float32 pairs at `coef`; out[0] = tᵀ(g − gPrev), out[1] = tᵀg.
 * Δz is read from p (broydenDots wrote it); z and zPrev are unused, kept so both kernel
 * modules have one signature.
 */
export function broydenCombine(z: usize, zPrev: usize, p: usize, g: usize, gPrev: usize, U: usize, V: usize, stride: usize, coef: usize, count: i32, n: i32, s: usize, out: usize): void {
  const q = s, t = s + (<usize>n << 2);
  let den: f64 = 0, vg: f64 = 0;
  const quads = n & ~3;
  for (let k0 = 0; k0 < quads; k0 += BLOCK) {
    let dv = f32x4.splat(0), wv = f32x4.splat(0);
    for (let k = k0, e = end(k0, quads); k < e; k += 4) {
      const o = <usize>k << 2;
      const gv = v128.load(g + o);
      let tv = f32x4.neg(v128.load(p + o)), qv = gv;
      for (let j = 0; j < count; j++) {
        const jo = <usize>j * stride + o, cj = coef + (<usize>j << 3);
        tv = f32x4.add(tv, f32x4.mul(v128.load32_splat(cj), v128.load(V + jo)));
        qv = f32x4.sub(qv, f32x4.mul(v128.load32_splat(cj, 4), v128.load(U + jo)));
      }
      v128.store(q + o, qv);
      v128.store(t + o, tv);
      dv = f32x4.add(dv, f32x4.mul(tv, f32x4.sub(gv, v128.load(gPrev + o))));
      wv = f32x4.add(wv, f32x4.mul(tv, gv));
    }
    den += f64sum(dv);
    vg += f64sum(wv);
  }
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    const gv = ld1(g + o);
    let tv = -ld1(p + o), qv = gv;
    for (let j = 0; j < count; j++) {
      const jo = <usize>j * stride + o, cj = coef + (<usize>j << 3);
      tv += load<f32>(cj) * ld1(V + jo);
      qv -= load<f32>(cj, 4) * ld1(U + jo);
    }
    st1(q + o, qv);
    st1(t + o, tv);
    den += <f64>tv * (gv - ld1(gPrev + o));
    vg += <f64>tv * gv;
  }
  store<f64>(out, den);
  store<f64>(out, vg, 8);
}

/**
 * Stores the rank-one pair u = (dzScale·Δz + q − cOld·U_old)·inv, v = t into the slot
 * and accepts z + (q − tail·u): zPrev ← z, gPrev ← g, p ← step, z ← z + step.
 * out[0] is 0 when the pair is finite, out[1] when the new z is (NaN otherwise).
 */
export function broydenUpdateAccept(z: usize, zPrev: usize, g: usize, gPrev: usize, p: usize, s: usize, Us: usize, Vs: usize, inv: f64, dzScale: f64, cOld: f64, tail: f64, n: i32, out: usize): void {
  const q = s, t = s + (<usize>n << 2);
  const ivf = <f32>inv, dsf = <f32>dzScale, cof = <f32>cOld, tlf = <f32>tail;
  const iv = f32x4.splat(ivf), ds = f32x4.splat(dsf), co = f32x4.splat(cof), tl = f32x4.splat(tlf);
  let pm = f32x4.splat(0), zm = f32x4.splat(0);
  const quads = n & ~3;
  for (let k = 0; k < quads; k += 4) {
    const o = <usize>k << 2;
    const qv = v128.load(q + o), tv = v128.load(t + o);
    const u = f32x4.mul(f32x4.sub(f32x4.add(f32x4.mul(ds, v128.load(p + o)), qv), f32x4.mul(co, v128.load(Us + o))), iv);
    v128.store(Us + o, u);
    v128.store(Vs + o, tv);
    pm = bad(bad(pm, u), tv);
    const step = f32x4.sub(qv, f32x4.mul(tl, u));
    const zv = v128.load(z + o);
    v128.store(zPrev + o, zv);
    v128.store(gPrev + o, v128.load(g + o));
    v128.store(p + o, step);
    const zn = f32x4.add(zv, step);
    v128.store(z + o, zn);
    zm = bad(zm, zn);
  }
  let pr = false, zr = false;
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    const qv = ld1(q + o), tv = ld1(t + o);
    const u = (dsf * ld1(p + o) + qv - cof * ld1(Us + o)) * ivf;
    st1(Us + o, u);
    st1(Vs + o, tv);
    pr = bad1(bad1(pr, u), tv);
    const step = qv - tlf * u;
    const zv = ld1(z + o);
    st1(zPrev + o, zv);
    st1(gPrev + o, ld1(g + o));
    st1(p + o, step);
    const zn = zv + step;
    st1(z + o, zn);
    zr = bad1(zr, zn);
  }
  store<f64>(out, verdict(pm, pr));
  store<f64>(out, verdict(zm, zr), 8);
}

/**
 * Accepts z + (q − tail·U_slot) without storing an update (tail 0: plain q).
 * With `fromPrev`, z is rebuilt from zPrev (a stored update was rolled back).
 */
export function broydenAccept(z: usize, zPrev: usize, g: usize, gPrev: usize, p: usize, s: usize, Us: usize, tail: f64, fromPrev: bool, n: i32): f64 {
  const q = s;
  const tlf = <f32>tail, tl = f32x4.splat(tlf);
  const useTail = tail != 0;
  let zm = f32x4.splat(0);
  const quads = n & ~3;
  for (let k = 0; k < quads; k += 4) {
    const o = <usize>k << 2;
    let step = v128.load(q + o);
    if (useTail) step = f32x4.sub(step, f32x4.mul(tl, v128.load(Us + o)));
    let zv: v128;
    if (fromPrev) {
      zv = v128.load(zPrev + o);
    } else {
      zv = v128.load(z + o);
      v128.store(zPrev + o, zv);
      v128.store(gPrev + o, v128.load(g + o));
    }
    v128.store(p + o, step);
    const zn = f32x4.add(zv, step);
    v128.store(z + o, zn);
    zm = bad(zm, zn);
  }
  let r = false;
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    let step = ld1(q + o);
    if (useTail) step -= tlf * ld1(Us + o);
    let zv: f32;
    if (fromPrev) {
      zv = ld1(zPrev + o);
    } else {
      zv = ld1(z + o);
      st1(zPrev + o, zv);
      st1(gPrev + o, ld1(g + o));
    }
    st1(p + o, step);
    const zn = zv + step;
    st1(z + o, zn);
    r = bad1(r, zn);
  }
  return verdict(zm, r);
}

/** out[j] = (Fⱼ − Xⱼ)ᵀ g for j < count (float64); rows `stride` bytes apart. */
export function andersonGram(X: usize, F: usize, stride: usize, g: usize, count: i32, n: i32, out: usize): void {
  const quads = n & ~3;
  for (let j = 0; j < count; j++) {
    const xo = X + <usize>j * stride, fo = F + <usize>j * stride;
    let t: f64 = 0;
    for (let k0 = 0; k0 < quads; k0 += BLOCK) {
      let s0 = f32x4.splat(0);
      for (let k = k0, e = end(k0, quads); k < e; k += 4) {
        const o = <usize>k << 2;
        s0 = f32x4.add(s0, f32x4.mul(f32x4.sub(v128.load(fo + o), v128.load(xo + o)), v128.load(g + o)));
      }
      t += f64sum(s0);
    }
    for (let k = quads; k < n; k++) {
      const o = <usize>k << 2;
      t += <f64>(ld1(fo + o) - ld1(xo + o)) * ld1(g + o);
    }
    store<f64>(out + (<usize>j << 3), t);
  }
}

/** z = Σⱼ αⱼ(β Fⱼ + (1−β) Xⱼ) over j < count with αⱼ ≠ 0 (αⱼ float64 at `alpha`). */
export function andersonMix(z: usize, X: usize, F: usize, stride: usize, alpha: usize, beta: f64, count: i32, n: i32): f64 {
  let zm = f32x4.splat(0);
  const quads = n & ~3;
  for (let k = 0; k < quads; k += 4) {
    const o = <usize>k << 2;
    let acc = f32x4.splat(0);
    for (let j = 0; j < count; j++) {
      const a = load<f64>(alpha + (<usize>j << 3));
      if (a == 0) continue;
      const jo = <usize>j * stride + o;
      acc = f32x4.add(acc, f32x4.add(f32x4.mul(f32x4.splat(<f32>(beta * a)), v128.load(F + jo)), f32x4.mul(f32x4.splat(<f32>((1 - beta) * a)), v128.load(X + jo))));
    }
    v128.store(z + o, acc);
    zm = bad(zm, acc);
  }
  let r = false;
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    let acc: f32 = 0;
    for (let j = 0; j < count; j++) {
      const a = load<f64>(alpha + (<usize>j << 3));
      if (a == 0) continue;
      const jo = <usize>j * stride + o;
      acc += <f32>(beta * a) * ld1(F + jo) + <f32>((1 - beta) * a) * ld1(X + jo);
    }
    st1(z + o, acc);
    r = bad1(r, acc);
  }
  return verdict(zm, r);
}
