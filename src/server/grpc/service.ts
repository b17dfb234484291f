// The Open Inference Protocol over gRPC: inference.GRPCInferenceService from the vendored proto
// (vendor/open-inference-protocol), on its own port. Every RPC goes through what HTTP uses:
// the same inferV2 (limits, caps, solver settings, sequences, cache), the same API keys (the
// `authorization` metadata key), the same error catalogue (mapped to gRPC statuses in
// status.ts), the same metrics. The call's gRPC deadline caps the request deadline; a
// client's cancel frees its queue place or solver rows, as a closed HTTP connection does.
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Ajv } from 'ajv';
import type { FastifyInstance } from 'fastify';
import { DeqError } from '../../errors.js';
import { keyChecker } from '../plugins/auth.js';
import { toClientError, type ClientError } from '../plugins/errors.js';
import { isReady, type ServerState } from '../state.js';
import { findV2Model, inferBodySchema, inferV2, modelMetadata, serverMetadata, type SolveRequest } from '../v2-infer.js';
import { toServiceError } from './status.js';
import { fromInferRequest, toInferResponse, type ModelInferRequest } from './tensors.js';

/** The vendored proto, beside dist/ and src/ alike. */
export const PROTO_PATH = fileURLToPath(new URL('../../../vendor/open-inference-protocol/open_inference_grpc.proto', import.meta.url));

/** The service's full name, as its RPC paths start. */
export const SERVICE = 'inference.GRPCInferenceService';

// int64 as decimal strings (no precision lost past 2^53), oneofs named, empty fields present.
const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

export interface GrpcServer {
  port: number;
  /** Stops taking calls and waits for running ones up to `graceMs`, then cancels the rest. */
  close(graceMs: number): Promise<void>;
}

type Unary = (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

/** RPCs a probe may call without a key when health is open (--open-health), as the HTTP health routes. */
const HEALTH_RPCS = new Set(['ServerLive', 'ServerReady', 'ModelReady']);

/**
 * Starts the gRPC service on `host:port` (0: any free port) for a built app (its state,
 * metrics and logger). Rejects with DEQ_ERR_CONFIG_INVALID when the port cannot be had.
 */
export async function startGrpc(app: FastifyInstance, state: ServerState, host: string, port: number): Promise<GrpcServer> {
  const { config } = state;
  const definition = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  const proto = grpc.loadPackageDefinition(definition) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } };
  const validate = new Ajv({ allErrors: false, allowUnionTypes: true, coerceTypes: false, useDefaults: true, verbose: true, strict: false }).compile(inferBodySchema(config));
  const authorized = config.apiKeys.length > 0 ? keyChecker(config.apiKeys) : undefined;
  const { metrics } = app;

  /** Wraps a handler: auth, shutdown, errors, metrics and the log line, as the HTTP plugins do. */
  const rpc = (name: string, handler: (call: grpc.ServerUnaryCall<any, any>, fields: Record<string, unknown>) => Promise<unknown>): Unary => (call, callback) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    const started = performance.now();
    const fields: Record<string, unknown> = {};
    const finish = (err: ClientError | undefined, reply?: unknown) => {
      const status = err ? err.status : 200;
      const seconds = (performance.now() - started) / 1000;
      metrics.requestDuration.observe({ method: 'GRPC', route: `/${SERVICE}/${name}`, status: String(status) }, seconds);
      const line = { method: 'GRPC', route: `/${SERVICE}/${name}`, status, ms: Math.round(seconds * 1e5) / 100, ...(err ? { code: err.code } : {}), ...fields };
      if (status >= 500 && err?.code !== 'DEQ_ERR_SHUTTING_DOWN') app.log.error(line, 'request');
      else app.log.info(line, 'request');
      if (err) {
        metrics.countError(err.code);
        callback(toServiceError(err) as grpc.ServiceError);
      } else callback(null, reply);
    };
    (async () => {
      const open = HEALTH_RPCS.has(name) && config.openHealth;
      if (authorized && !open && !authorized(call.metadata.get('authorization')[0])) {
        throw new DeqError('DEQ_ERR_UNAUTHORIZED', 'missing or invalid API key (send the metadata key authorization: Bearer <key>)');
      }
      if (state.closing && !HEALTH_RPCS.has(name)) throw new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server is shutting down');
      return handler(call, fields);
    })().then((reply) => finish(undefined, reply), (err: unknown) => {
      if (!isClientErrorLogged(err)) app.log.error({ err }, 'gRPC handler failed');
      finish(toClientError(err));
    });
  };

  const impl: Record<string, Unary> = {
    ServerLive: rpc('ServerLive', async () => ({ live: true })),
    ServerReady: rpc('ServerReady', async () => ({ ready: isReady(state) })),
    // As Triton: a model or version it does not serve is not ready (OK, ready false), not an error.
    ModelReady: rpc('ModelReady', async (call) => {
      try {
        findV2Model(state.models, call.request.name, call.request.version);
      } catch {
        return { ready: false };
      }
      return { ready: isReady(state) };
    }),
    ServerMetadata: rpc('ServerMetadata', async () => serverMetadata(config)),
    ModelMetadata: rpc('ModelMetadata', async (call) => {
      const meta = modelMetadata(findV2Model(state.models, call.request.name, call.request.version));
      const shapes = (ts: typeof meta.inputs) => ts.map((t) => ({ ...t, shape: t.shape.map(String) }));
      return { ...meta, inputs: shapes(meta.inputs), outputs: shapes(meta.outputs) };
    }),
    ModelInfer: rpc('ModelInfer', async (call, fields) => {
      const msg = call.request as ModelInferRequest;
      const m = findV2Model(state.models, msg.model_name, msg.model_version);
      const { body, raw } = fromInferRequest(msg);
      // The REST body's schema, on the envelope: the tensors' data is checked by inferV2, as REST's binary form is.
      if (!validate({ ...body, inputs: body.inputs.map(({ data: _, ...t }) => t) })) throw Object.assign(new Error('invalid request'), { validation: validate.errors, validationContext: 'body' });
      if (!isReady(state)) throw new DeqError('DEQ_ERR_MODEL_NOT_READY', `model ${m.name} is not ready yet (loading, or no live worker)`);
      const req = solveRequest(app, call);
      const deadline = call.getDeadline();
      const cap = deadline instanceof Date ? deadline.getTime() : Number.isFinite(deadline) ? deadline : Infinity;
      try {
        const response = await inferV2(req, m, body, config, cap);
        if (call.cancelled) throw new DeqError('DEQ_ERR_CANCELLED', 'the client cancelled the call');
        return toInferResponse(response, raw);
      } finally {
        // What the solve added to the request's log line (model, batch, solver summary).
        Object.assign(fields, req.logFields);
      }
    }),
  };

  const server = new grpc.Server({
    // The same bound as a JSON body over HTTP (--body-limit); past it grpc-js answers RESOURCE_EXHAUSTED.
    'grpc.max_receive_message_length': config.bodyLimitBytes,
    'grpc.max_send_message_length': -1,
  });
  server.addService(proto.inference.GRPCInferenceService.service, impl);
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  }).catch((err: Error) => {
    server.forceShutdown();
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting --grpc-port: cannot listen on ${address} (${err.message}); choose another port with --grpc-port N (DEQ_GRPC_PORT)`, { setting: 'grpcPort' });
  });
  return {
    port: bound,
    close: (graceMs) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
      server.tryShutdown(() => { clearTimeout(timer); resolve(); });
    }),
  };
}

/** Errors the catalogue knows are the client's business; anything else is logged with its stack. */
function isClientErrorLogged(err: unknown): boolean {
  const e = toClientError(err);
  return e.code !== 'DEQ_ERR_INTERNAL';
}

/**
 * What runSolve reads of a request, for a gRPC call: the app (state, metrics), the log fields,
 * the start time, and `gone`, aborted when the client cancels, as plugins/client-gone.ts aborts
 * it for an HTTP client that goes away.
 */
function solveRequest(app: FastifyInstance, call: grpc.ServerUnaryCall<unknown, unknown>): SolveRequest {
  const gone = new AbortController();
  call.once('cancelled', () => gone.abort());
  return { server: app, raw: {}, gone: gone.signal, startedAt: performance.now(), logFields: {} } as unknown as SolveRequest;
}
