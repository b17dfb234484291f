// Child process for hostile-cost.test.ts: asks a server for a large v2 answer
// while polling /v2/health/live every 20 ms, then checks the answer. The client
// runs apart from the server so that receiving and parsing 26 MB of JSON is not
// counted as the server's event-loop time. Prints one JSON line.
const [url, model, batchArg, lengthArg, vocabArg] = process.argv.slice(2);
const batch = Number(batchArg), length = Number(lengthArg), vocab = Number(vocabArg);
const tokens = Array.from({ length: batch * length }, (_, i) => 5 + (i % 300));
const targets = tokens.map((t) => (t + 1) % vocab);
const body = JSON.stringify({
  parameters: { max_iter: 3 },
  inputs: [
    { name: 'tokens', datatype: 'INT64', shape: [batch, length], data: tokens },
    { name: 'targets', datatype: 'INT64', shape: [batch, length], data: targets },
  ],
  outputs: [{ name: 'logprobs' }, { name: 'target_logprobs' }],
});
let finished = false, worst = 0, worstAt = 0, probes = 0, headersAt = 0;
const start = performance.now();
const req = fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  .then(async (r) => { headersAt = performance.now() - start; return { status: r.status, bytes: await r.arrayBuffer() }; })
  .finally(() => { finished = true; });
while (!finished) {
  const t0 = performance.now();
  await (await fetch(`${url}/v2/health/live`)).arrayBuffer();
  const ms = performance.now() - t0;
  if (ms > worst) { worst = ms; worstAt = t0 - start; }
  probes++;
  await new Promise((r) => setTimeout(r, 20));
}
const { status, bytes } = await req;
const out = JSON.parse(Buffer.from(bytes).toString('utf8'));
const [logprobs, target] = out.outputs ?? [];
// The streamed tensors agree with each other: target_logprobs[r] = logprobs[r, target[r]].
const rows = [0, 1, Math.floor(batch * length / 2), batch * length - 1];
const mismatches = rows.filter((r) => !(Math.abs(target.data[r] - logprobs.data[r * vocab + targets[r]]) < 1e-4)).length;
const endAt = performance.now() - start;
console.log(JSON.stringify({ status, worst, worstAt, headersAt, endAt, probes, shape: logprobs.shape, dataLength: logprobs.data.length, targetLength: target.data.length, mismatches }));
