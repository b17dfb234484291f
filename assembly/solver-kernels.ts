// WebAssembly SIMD kernels for the solver's per-sample row algebra (AssemblyScript,
// compiled by `npm run build:wasm` into dist/solver-kernels.wasm).
//
// Every pointer is a byte offset into the imported memory, where SolverWorkspace
// lays out its buffers. Rows are float32 as in the TypeScript reference, and every
// product, sum and rounding is done as the reference does it: float32 values
// promoted to float64, arithmetic in float64, one rounding to float32 on store.
// Only the order in which dot products add up differs (two lanes), so iterates
// agree with the reference to ~1e-15 relative per step. Two elements per v128
// (f64x2); an odd n ends with a scalar element. solver-kernels-f32.ts has the same
// exports in float32 arithmetic (the 'wasm-f32' kernel): faster, not bit-faithful.

@inline function ld(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}
@inline function st(p: usize, v: v128): void {
  v128.store64_lane(p, f32x4.demote_f64x2_zero(v), 0);
}
/** Elements 2 and 3 of the float32 quad at p, promoted (its low half is ld(p)). */
@inline function ldHi(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3));
}
@inline function ld1(p: usize): f64 {
  return <f64>load<f32>(p);
}
@inline function st1(p: usize, v: f64): void {
  store<f32>(p, <f32>v);
}
@inline function lo(v: v128): v128 {
  return f64x2.promote_low_f32x4(v);
}
/** Rounds two float64 pairs to float32 and packs them into one quad. */
@inline function pack(l: v128, h: v128): v128 {
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(l), f32x4.demote_f64x2_zero(h), 0, 1, 4, 5);
}
@inline function hsum(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}
@inline function round32(v: v128): v128 {
  return f64x2.promote_low_f32x4(f32x4.demote_f64x2_zero(v));
}

/** g = f(z) − z; out[0] = Σg² (float64 g), out[1] = Σf(z)². Four elements a step. */
export function residual(z: usize, fz: usize, g: usize, n: i32, out: usize): void {
  let gg0 = f64x2.splat(0), ff0 = f64x2.splat(0), gg1 = f64x2.splat(0), ff1 = f64x2.splat(0);
  const quads = n & ~3;
  for (let k = 0; k < quads; k += 4) {
    const o = <usize>k << 2;
    const fv = v128.load(fz + o), zv = v128.load(z + o);
    const f0 = lo(fv), f1 = ldHi(fv);
    const d0 = f64x2.sub(f0, lo(zv)), d1 = f64x2.sub(f1, ldHi(zv));
    v128.store(g + o, pack(d0, d1));
    gg0 = f64x2.add(gg0, f64x2.mul(d0, d0));
    gg1 = f64x2.add(gg1, f64x2.mul(d1, d1));
    ff0 = f64x2.add(ff0, f64x2.mul(f0, f0));
    ff1 = f64x2.add(ff1, f64x2.mul(f1, f1));
  }
  let sg = hsum(f64x2.add(gg0, gg1)), sf = hsum(f64x2.add(ff0, ff1));
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    const f = ld1(fz + o);
    const d = f - ld1(z + o);
    st1(g + o, d);
    sg += d * d;
    sf += f * f;
  }
  store<f64>(out, sg);
  store<f64>(out, sf, 8);
}

/** Σ row in float64: finite exactly when every float32 value is (n·FLT_MAX < DBL_MAX). */
export function finite(p: usize, n: i32): f64 {
  let s = f64x2.splat(0);
  const pairs = n & ~1;
  for (let k = 0; k < pairs; k += 2) s = f64x2.add(s, ld(p + (<usize>k << 2)));
  let t = hsum(s);
  if (pairs < n) t += ld1(p + (<usize>pairs << 2));
  return t;
}

export function copy(dst: usize, src: usize, bytes: usize): void {
  memory.copy(dst, src, bytes);
}

/** Fixed point: z ← z + d·g. Returns Σz. */
export function fixedPoint(z: usize, g: usize, d: f64, n: i32): f64 {
  const dv = f64x2.splat(d);
  let s = f64x2.splat(0);
  const pairs = n & ~1;
  for (let k = 0; k < pairs; k += 2) {
    const o = <usize>k << 2;
    const v = round32(f64x2.add(ld(z + o), f64x2.mul(dv, ld(g + o))));
    st(z + o, v);
    s = f64x2.add(s, v);
  }
  let t = hsum(s);
  if (pairs < n) {
    const o = <usize>pairs << 2;
    const v = <f64><f32>(ld1(z + o) + d * ld1(g + o));
    st1(z + o, v);
    t += v;
  }
  return t;
}

/** Broyden's first step: zPrev ← z, gPrev ← g, p ← g, z ← z + g. Returns Σz. */
export function broydenStart(z: usize, g: usize, p: usize, zPrev: usize, gPrev: usize, n: i32): f64 {
  const bytes = <usize>n << 2;
  memory.copy(zPrev, z, bytes);
  memory.copy(gPrev, g, bytes);
  memory.copy(p, g, bytes);
  return fixedPoint(z, g, 1.0, n);
}

/** p ← Δz = z − zPrev (rounded to float32, as the reference stores it). */
function broydenDelta(z: usize, zPrev: usize, p: usize, n: i32): void {
  const pairs = n & ~1;
  for (let k = 0; k < pairs; k += 2) {
    const o = <usize>k << 2;
    st(p + o, f64x2.sub(ld(z + o), ld(zPrev + o)));
  }
  if (pairs < n) {
    const o = <usize>pairs << 2;
    st1(p + o, ld1(z + o) - ld1(zPrev + o));
  }
}

/**
 * p ← Δz, then out[2j] = Uⱼ·Δz and out[2j+1] = Vⱼ·g for j < count (float64), rows
 * `stride` bytes apart.
 */
export function broydenDots(z: usize, zPrev: usize, p: usize, g: usize, U: usize, V: usize, stride: usize, count: i32, n: i32, out: usize): void {
  broydenDelta(z, zPrev, p, n);
  for (let j = 0; j < count; j++) dot2(U + <usize>j * stride, p, V + <usize>j * stride, g, n, out + (<usize>j << 4));
}

/** out[0] = a·x, out[1] = b·y. Four elements a step, two accumulators per dot (add latency). */
function dot2(a: usize, x: usize, b: usize, y: usize, n: i32, out: usize): void {
  let s0 = f64x2.splat(0), s1 = f64x2.splat(0), s2 = f64x2.splat(0), s3 = f64x2.splat(0);
  const quads = n & ~3;
  for (let k = 0; k < quads; k += 4) {
    const o = <usize>k << 2;
    const av = v128.load(a + o), xv = v128.load(x + o), bv = v128.load(b + o), yv = v128.load(y + o);
    s0 = f64x2.add(s0, f64x2.mul(f64x2.promote_low_f32x4(av), f64x2.promote_low_f32x4(xv)));
    s1 = f64x2.add(s1, f64x2.mul(f64x2.promote_low_f32x4(bv), f64x2.promote_low_f32x4(yv)));
    s2 = f64x2.add(s2, f64x2.mul(ldHi(av), ldHi(xv)));
    s3 = f64x2.add(s3, f64x2.mul(ldHi(bv), ldHi(yv)));
  }
  let t0 = hsum(f64x2.add(s0, s2)), t1 = hsum(f64x2.add(s1, s3));
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2;
    t0 += ld1(a + o) * ld1(x + o);
    t1 += ld1(b + o) * ld1(y + o);
  }
  store<f64>(out, t0);
  store<f64>(out, t1, 8);
}

/**
 * t = −Δz + Σⱼ bⱼ Vⱼ and q = g − Σⱼ cⱼ Uⱼ (float64, into s[n..2n) and s[0..n)),
 * adding the updates in the reference's order; out[0] = tᵀ(g − gPrev), out[1] = tᵀg.
 * Δz is taken from z − zPrev in float64, as the reference does, not from its rounded copy p.
 * `coef` holds (bⱼ, cⱼ) pairs; U and V hold `count` rows of n, `stride` bytes apart.
 */
export function broydenCombine(z: usize, zPrev: usize, p: usize, g: usize, gPrev: usize, U: usize, V: usize, stride: usize, coef: usize, count: i32, n: i32, s: usize, out: usize): void {
  let den0 = f64x2.splat(0), vg0 = f64x2.splat(0), den1 = f64x2.splat(0), vg1 = f64x2.splat(0);
  const q = s, t = s + (<usize>n << 3);
  const quads = n & ~3;
  for (let k = 0; k < quads; k += 4) {
    const o = <usize>k << 2, o8 = <usize>k << 3;
    const zv = v128.load(z + o), zp = v128.load(zPrev + o), gq = v128.load(g + o), gp = v128.load(gPrev + o);
    let t0 = f64x2.sub(lo(zp), lo(zv)), t1 = f64x2.sub(ldHi(zp), ldHi(zv));
    const g0 = lo(gq), g1 = ldHi(gq);
    let q0 = g0, q1 = g1;
    for (let j = 0; j < count; j++) {
      const jo = <usize>j * stride + o;
      const cj = coef + (<usize>j << 4);
      const b = f64x2.splat(load<f64>(cj)), c = f64x2.splat(load<f64>(cj, 8));
      const vv = v128.load(V + jo), uv = v128.load(U + jo);
      t0 = f64x2.add(t0, f64x2.mul(b, lo(vv)));
      t1 = f64x2.add(t1, f64x2.mul(b, ldHi(vv)));
      q0 = f64x2.sub(q0, f64x2.mul(c, lo(uv)));
      q1 = f64x2.sub(q1, f64x2.mul(c, ldHi(uv)));
    }
    v128.store(q + o8, q0);
    v128.store(q + o8, q1, 16);
    v128.store(t + o8, t0);
    v128.store(t + o8, t1, 16);
    den0 = f64x2.add(den0, f64x2.mul(t0, f64x2.sub(g0, lo(gp))));
    den1 = f64x2.add(den1, f64x2.mul(t1, f64x2.sub(g1, ldHi(gp))));
    vg0 = f64x2.add(vg0, f64x2.mul(t0, g0));
    vg1 = f64x2.add(vg1, f64x2.mul(t1, g1));
  }
  let d = hsum(f64x2.add(den0, den1)), w = hsum(f64x2.add(vg0, vg1));
  for (let k = quads; k < n; k++) {
    const o = <usize>k << 2, o8 = <usize>k << 3;
    let tv = -(ld1(z + o) - ld1(zPrev + o));
    const gv = ld1(g + o);
    let qv = gv;
    for (let j = 0; j < count; j++) {
      const jo = <usize>j * stride + o;
      const cj = coef + (<usize>j << 4);
      tv += load<f64>(cj) * ld1(V + jo);
      qv -= load<f64>(cj, 8) * ld1(U + jo);
    }
    store<f64>(q + o8, qv);
    store<f64>(t + o8, tv);
    d += tv * (gv - ld1(gPrev + o));
    w += tv * gv;
  }
  store<f64>(out, d);
  store<f64>(out, w, 8);
}

/**
 * Stores the rank-one pair u = (dzScale·Δz + q − cOld·U_old)·inv, v = t into the slot
 * and accepts z + (q − tail·u): zPrev ← z, gPrev ← g, p ← step, z ← z + step.
 * out[0] = Σ(u + v) of the stored float32 values (finite exactly when the pair is), out[1] = Σ new z.
 */
export function broydenUpdateAccept(z: usize, zPrev: usize, g: usize, gPrev: usize, p: usize, s: usize, Us: usize, Vs: usize, inv: f64, dzScale: f64, cOld: f64, tail: f64, n: i32, out: usize): void {
  const q = s, t = s + (<usize>n << 3);
  const iv = f64x2.splat(inv), ds = f64x2.splat(dzScale), co = f64x2.splat(cOld), tl = f64x2.splat(tail);
  let check = f64x2.splat(0), zs = f64x2.splat(0);
  const pairs = n & ~1;
  for (let k = 0; k < pairs; k += 2) {
    const o = <usize>k << 2, o8 = <usize>k << 3;
    const qv = v128.load(q + o8), tv = v128.load(t + o8);
    const u = f64x2.mul(f64x2.sub(f64x2.add(f64x2.mul(ds, ld(p + o)), qv), f64x2.mul(co, ld(Us + o))), iv);
    st(Us + o, u);
    st(Vs + o, tv);
    // Summed as stored: a value finite in float64 can still overflow float32.
    check = f64x2.add(check, f64x2.add(round32(u), round32(tv)));
    const step = f64x2.sub(qv, f64x2.mul(tl, round32(u)));
    const zv = ld(z + o);
    st(zPrev + o, zv);
    v128.store64_lane(gPrev + o, v128.load64_zero(g + o), 0);
    st(p + o, step);
    const zn = round32(f64x2.add(zv, step));
    st(z + o, zn);
    zs = f64x2.add(zs, zn);
  }
  let c = hsum(check), w = hsum(zs);
  if (pairs < n) {
    const o = <usize>pairs << 2, o8 = <usize>pairs << 3;
    const qv = load<f64>(q + o8), tv = load<f64>(t + o8);
    const u = (dzScale * ld1(p + o) + qv - cOld * ld1(Us + o)) * inv;
    st1(Us + o, u);
    st1(Vs + o, tv);
    c += <f64><f32>u + <f64><f32>tv;
    const step = qv - tail * <f64><f32>u;
    const zv = ld1(z + o);
    st1(zPrev + o, zv);
    store<f32>(gPrev + o, load<f32>(g + o));
    st1(p + o, step);
    const zn = <f64><f32>(zv + step);
    st1(z + o, zn);
    w += zn;
  }
  store<f64>(out, c);
  store<f64>(out, w, 8);
}

/**
 * Accepts z + (q − tail·U_slot) without storing an update (tail 0: plain q).
 * With `fromPrev`, z is rebuilt from zPrev (a stored update was rolled back). Returns Σ new z.
 */
export function broydenAccept(z: usize, zPrev: usize, g: usize, gPrev: usize, p: usize, s: usize, Us: usize, tail: f64, fromPrev: bool, n: i32): f64 {
  const q = s;
  const tl = f64x2.splat(tail);
  const useTail = tail != 0;
  let zs = f64x2.splat(0);
  const pairs = n & ~1;
  for (let k = 0; k < pairs; k += 2) {
    const o = <usize>k << 2, o8 = <usize>k << 3;
    let step = v128.load(q + o8);
    if (useTail) step = f64x2.sub(step, f64x2.mul(tl, ld(Us + o)));
    let zv: v128;
    if (fromPrev) {
      zv = ld(zPrev + o);
    } else {
      zv = ld(z + o);
      st(zPrev + o, zv);
      v128.store64_lane(gPrev + o, v128.load64_zero(g + o), 0);
    }
    st(p + o, step);
    const zn = round32(f64x2.add(zv, step));
    st(z + o, zn);
    zs = f64x2.add(zs, zn);
  }
  let w = hsum(zs);
  if (pairs < n) {
    const o = <usize>pairs << 2, o8 = <usize>pairs << 3;
    let step = load<f64>(q + o8);
    if (useTail) step -= tail * ld1(Us + o);
    let zv: f64;
    if (fromPrev) {
      zv = ld1(zPrev + o);
    } else {
      zv = ld1(z + o);
      st1(zPrev + o, zv);
      store<f32>(gPrev + o, load<f32>(g + o));
    }
    st1(p + o, step);
    const zn = <f64><f32>(zv + step);
    st1(z + o, zn);
    w += zn;
  }
  return w;
}

/** out[j] = (Fⱼ − Xⱼ)ᵀ g for j < count; rows `stride` bytes apart. */
export function andersonGram(X: usize, F: usize, stride: usize, g: usize, count: i32, n: i32, out: usize): void {
  const quads = n & ~3;
  for (let j = 0; j < count; j++) {
    const xo = X + <usize>j * stride, fo = F + <usize>j * stride;
    let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
    for (let k = 0; k < quads; k += 4) {
      const o = <usize>k << 2;
      const fv = v128.load(fo + o), xv = v128.load(xo + o), gv = v128.load(g + o);
      s0 = f64x2.add(s0, f64x2.mul(f64x2.sub(f64x2.promote_low_f32x4(fv), f64x2.promote_low_f32x4(xv)), f64x2.promote_low_f32x4(gv)));
      s1 = f64x2.add(s1, f64x2.mul(f64x2.sub(ldHi(fv), ldHi(xv)), ldHi(gv)));
    }
    let t = hsum(f64x2.add(s0, s1));
    for (let k = quads; k < n; k++) {
      const o = <usize>k << 2;
      t += (ld1(fo + o) - ld1(xo + o)) * ld1(g + o);
    }
    store<f64>(out + (<usize>j << 3), t);
  }
}

/**
 * z = Σⱼ αⱼ(β Fⱼ + (1−β) Xⱼ) over j < count with αⱼ ≠ 0, rounded to float32 after
 * each term as the reference's in-place accumulation does. Returns Σz.
 */
export function andersonMix(z: usize, X: usize, F: usize, stride: usize, alpha: usize, beta: f64, count: i32, n: i32): f64 {
  let zs = f64x2.splat(0);
  const pairs = n & ~1;
  for (let k = 0; k < pairs; k += 2) {
    const o = <usize>k << 2;
    let acc = f64x2.splat(0);
    for (let j = 0; j < count; j++) {
      const a = load<f64>(alpha + (<usize>j << 3));
      if (a == 0) continue;
      const jo = <usize>j * stride + o;
      const term = f64x2.add(f64x2.mul(f64x2.splat(beta * a), ld(F + jo)), f64x2.mul(f64x2.splat((1 - beta) * a), ld(X + jo)));
      acc = round32(f64x2.add(acc, term));
    }
    st(z + o, acc);
    zs = f64x2.add(zs, acc);
  }
  let w = hsum(zs);
  if (pairs < n) {
    const o = <usize>pairs << 2;
    let acc: f64 = 0;
    for (let j = 0; j < count; j++) {
      const a = load<f64>(alpha + (<usize>j << 3));
      if (a == 0) continue;
      const jo = <usize>j * stride + o;
      acc = <f64><f32>(acc + (beta * a * ld1(F + jo) + (1 - beta) * a * ld1(X + jo)));
    }
    st1(z + o, acc);
    w += acc;
  }
  return w;
}
