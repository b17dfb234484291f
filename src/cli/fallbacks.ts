import type { DeqModel } from '../runtime/index.js';

/** Says on stderr which preferred providers could not load and why, so a fallback is never silent. */
export function reportFallbacks(model: DeqModel): void {
  if (model.providerFallbacks.length === 0) return;
  process.stderr.write(`deq-serve: ${model.name} runs on ${model.provider}: ${model.providerFallbacks.join('; ')}\n`);
}
