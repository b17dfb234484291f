// Solver worker thread entry: one WorkerHost (worker-host.ts) per thread, given the pool's
// WorkerInit and port; it loads the models and answers the pool's messages (protocol.ts).
// NOTE: onnxruntime-node's session.run() blocks the calling thread (microsoft/onnxruntime#19611),
// hence a thread per worker.
import { parentPort, workerData } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { WorkerHost } from './worker-host.js';

const port = parentPort!;
const host = new WorkerHost(workerData as WorkerInit, (msg: FromWorker) => port.postMessage(msg));
port.on('message', (msg: ToWorker) => host.handle(msg));
void host.start();
