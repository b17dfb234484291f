// The error catalogue over gRPC: each catalogue code maps to the gRPC status Triton uses for the
// same failure (invalid argument, not found, unavailable…); the catalogue code itself travels in
// the trailing metadata as `deq-error-code`, the message as the status details.
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import type { ErrorCode } from '../../errors.js';
import type { ClientError } from '../plugins/errors.js';

/** gRPC status per HTTP status of the catalogue (Triton's mapping where it has one). */
const BY_HTTP_STATUS: Readonly<Record<number, Status>> = Object.freeze({
  400: Status.INVALID_ARGUMENT,
  401: Status.UNAUTHENTICATED,
  404: Status.NOT_FOUND,
  408: Status.DEADLINE_EXCEEDED,
  413: Status.RESOURCE_EXHAUSTED,
  414: Status.INVALID_ARGUMENT,
  415: Status.INVALID_ARGUMENT,
  417: Status.INVALID_ARGUMENT,
  422: Status.FAILED_PRECONDITION,
  431: Status.INVALID_ARGUMENT,
  499: Status.CANCELLED,
  500: Status.INTERNAL,
  503: Status.UNAVAILABLE,
  504: Status.DEADLINE_EXCEEDED,
});

/** The gRPC status for a catalogue error. */
export function grpcStatus(e: Pick<ClientError, 'status' | 'code'>): Status {
  if (e.code === 'DEQ_ERR_NOT_FOUND') return Status.UNIMPLEMENTED;
  return BY_HTTP_STATUS[e.status] ?? (e.status >= 500 ? Status.INTERNAL : Status.INVALID_ARGUMENT);
}

/** A client error as a gRPC error: status, message, and the catalogue code (and Retry-After) as trailers. */
export function toServiceError(e: ClientError): Partial<ServiceError> {
  const metadata = new Metadata();
  metadata.set('deq-error-code', e.code satisfies ErrorCode);
  if (e.retryAfterS !== undefined) metadata.set('retry-after', String(e.retryAfterS));
  return { code: grpcStatus(e), details: e.message, metadata };
}
