// bench compare --peers (issue #29): the report's wording and tables, peer parsing, default threads,
// and the mapping of per-window log-probabilities to scored tokens. The peers' own answers are
// checked against deq-serve in test/peers/ (npm run test:peers, which needs the peers' venv).
import { describe, expect, it } from 'vitest';
import { benchPeersMarkdown, defaultPeersPython, defaultThreads, parsePeers, PEERS, ratioText, scoredTokens, type PeersReport } from '../../src/eval/bench-peers.js';
import { planWindows } from '../../src/pipelines/text-scoring.js';

function report(over: Partial<PeersReport> = {}): PeersReport {
  return {
    model: 'fashion-mnist-jr', task: 'image-classification',
    solver: { method: 'broyden', tol: 1e-3, stop_mode: 'rel', max_iter: 30, history: 8 },
    solver_kernel: 'wasm-f32', machine: 'Test CPU, 8 cores', load_average: [0.1, 0.2, 0.3], inputs: 'Fashion-MNIST test images 0–63',
    peers: [{ peer: 'onnxruntime', versions: 'onnxruntime 1.30.0, numpy 2.4.6' }, { peer: 'torch-compile', versions: 'torch 2.15.0, BLAS mkl' }],
    unavailable: [{ peer: 'torchdeq', why: 'cannot import torchdeq' }],
    rows: [
      {
        batch: 1, threads: 1, samples: 64, deq_serve_ms: 2, nfe_deq_serve: 4.69, accuracy_deq_serve: 0.9375,
        peers: [
          { peer: 'onnxruntime', ms: 1.6, ratio: 0.8, nfe: 4.69, nfe_differs: 0, max_abs_diff: 3e-6, accuracy: 0.9375 },
          { peer: 'torch-compile', ms: 6, ratio: 3, nfe: 4.69, nfe_differs: 0, max_abs_diff: 1.2e-5, accuracy: 0.9375, compile_s: 41.25 },
        ],
      },
      {
        batch: 32, threads: 8, samples: 64, deq_serve_ms: 1, nfe_deq_serve: 4.69, accuracy_deq_serve: 0.9375,
        peers: [
          { peer: 'onnxruntime', ms: 2.5, ratio: 2.5, nfe: 4.69, nfe_differs: 0, max_abs_diff: 3e-6, accuracy: 0.9375 },
          { peer: 'torch-compile', ms: 3, ratio: 3, nfe: 5.25, nfe_differs: 7, max_abs_diff: 1e-2, accuracy: 0.921875 },
        ],
      },
    ],
    ...over,
  };
}

describe('bench compare --peers report', () => {
  it('says "slower" when deq-serve wins and "faster" when the peer does, from the ratio peer ms / deq-serve ms', () => {
    expect(ratioText(3)).toBe('3.0× slower');
    expect(ratioText(0.8)).toBe('1.3× faster');
    expect(ratioText(1)).toBe('1.0× slower');
    expect(ratioText(NaN)).toBe('–');
  });

  it('has one table per peer with NFE on both sides, max |Δ|, and the compile time only where there is one', () => {
    const md = benchPeersMarkdown(report(), 'deq-serve bench compare models/fashion-mnist-jr --peers all');
    expect(md).toContain('# bench compare: fashion-mnist-jr, deq-serve vs onnxruntime, torch-compile');
    expect(md).toContain('Machine: Test CPU, 8 cores');
    expect(md).toContain('broyden, tol 0.001 (rel), at most 30 evaluations of f, memory 8');
    expect(md).toContain('Reproduce: `deq-serve bench compare models/fashion-mnist-jr --peers all`');
    const ort = md.slice(md.indexOf('## onnxruntime'), md.indexOf('## torch-compile'));
    expect(ort).not.toContain('compile s');
    expect(ort).toContain('| 1 | 1 | 2.000 | 1.600 | 1.3× faster | 4.69 | 4.69 | 0 of 64 | 3.0e-6 | 93.8% / 93.8% |');
    const compiled = md.slice(md.indexOf('## torch-compile'), md.indexOf('## Where a peer wins'));
    expect(compiled).toContain('| 1 | 1 | 2.000 | 6.000 | 3.0× slower | 4.69 | 4.69 | 0 of 64 | 1.2e-5 | 93.8% / 93.8% | 41.3 |');
    expect(compiled).toContain('| 32 | 8 | 1.000 | 3.000 | 3.0× slower | 4.69 | 5.25 | 7 of 64 | 1.0e-2 | 93.8% / 92.2% | – |');
  });

  it('names the peers that could not run, and why, instead of dropping them', () => {
    expect(benchPeersMarkdown(report(), 'x')).toContain('- torchdeq: not run here — cannot import torchdeq');
  });

  it('states plainly each row where a peer wins, and each where a peer stopped at a different NFE', () => {
    const md = benchPeersMarkdown(report(), 'x');
    const wins = md.slice(md.indexOf('## Where a peer wins'), md.indexOf('## Different NFE'));
    expect(wins.trim().split('\n').filter((l) => l.startsWith('- '))).toEqual(['- onnxruntime is 1.3× faster than deq-serve at batch 1, 1 thread.']);
    expect(md.slice(md.indexOf('## Different NFE'))).toContain('- torch-compile at batch 32, 8 threads: 7 of 64 images stopped at a different NFE (mean 5.25 against deq-serve\'s 4.69).');
  });

  it('says so when no peer wins anywhere, and leaves out the NFE section when every NFE agrees', () => {
    const r = report();
    r.rows[0].peers[0] = { ...r.rows[0].peers[0], ms: 3, ratio: 1.5 };
    r.rows[1].peers[1] = { ...r.rows[1].peers[1], nfe_differs: 0 };
    const md = benchPeersMarkdown(r, 'x');
    expect(md).toContain('- Nowhere in this run: deq-serve was faster in every row.');
    expect(md).not.toContain('## Different NFE');
  });

  it('reports language models per window with tokens per second and perplexity on both sides', () => {
    const md = benchPeersMarkdown(report({
      model: 'brown-lm-jr', task: 'language-model', inputs: 'Brown test split',
      peers: [{ peer: 'torchdeq', versions: 'torch 2.15.0' }], unavailable: [],
      rows: [{
        batch: 1, threads: 1, samples: 64, deq_serve_ms: 10, nfe_deq_serve: 8.3, tokens_per_s_deq_serve: 3300, perplexity_deq_serve: 218.06,
        peers: [{ peer: 'torchdeq', ms: 20, ratio: 2, nfe: 8.3, nfe_differs: 0, max_abs_diff: 6e-6, tokens_per_s: 1650, perplexity: 218.04 }],
      }],
    }), 'x');
    expect(md).toContain('Per window');
    expect(md).toContain('| 1 | 1 | 10.000 | 20.000 | 2.0× slower | 3300 | 1650 | 8.30 | 8.30 | 0 of 64 | 6.0e-6 | 218.1 / 218.0 |');
  });
});

describe('bench compare --peers options', () => {
  it('parses a list of peers and "all", and refuses an unknown one by name', () => {
    expect(parsePeers('onnxruntime, torchdeq')).toEqual(['onnxruntime', 'torchdeq']);
    expect(parsePeers('all')).toEqual([...PEERS]);
    expect(() => parsePeers('onnxruntime,tensorflow')).toThrow(/unknown peer "tensorflow"/);
    expect(() => parsePeers('')).toThrow(/at least one peer/);
  });

  it('runs on 1 thread per side, and on every core only where the machine has more than 2', () => {
    expect(defaultThreads(2)).toEqual([1]);
    expect(defaultThreads(1)).toEqual([1]);
    expect(defaultThreads(16)).toEqual([1, 16]);
  });

  it('finds the peers\' venv under XDG_CACHE_HOME (as make-bench-venv.sh puts it)', () => {
    expect(defaultPeersPython({ XDG_CACHE_HOME: '/c' })).toBe('/c/deq-serve/bench-peers/bin/python');
  });

  it('maps per-window log-probabilities to the token each window scores, every token once', () => {
    const context = 4, stride = 2, tokens = 8;
    const plan = planWindows(tokens, context, stride);
    // value = 100 × window + position, so the source of every token is visible
    const values = plan.flatMap((_, k) => Array.from({ length: context }, (_, j) => 100 * k + j));
    expect(Array.from(scoredTokens(values, plan, context, tokens))).toEqual([0, 1, 2, 3, 102, 103, 202, 203]);
  });
});
