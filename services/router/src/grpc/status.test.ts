import { status } from '@grpc/grpc-js';
import { ERRORS, KvError, type ErrorCode } from '@shardkv/common';
import { ERROR_CODE_METADATA, grpcError, GRPC_STATUS, OUTCOME_METADATA } from './status';

const codes = Object.keys(ERRORS) as ErrorCode[];

describe('gRPC status of every error code', () => {
  test('maps every code of the error table, and nothing else', () => {
    expect(Object.keys(GRPC_STATUS).sort()).toEqual([...codes].sort());
  });

  test('keeps definite and indeterminate apart: UNAVAILABLE is only ever definite, every indeterminate code is DEADLINE_EXCEEDED or INTERNAL', () => {
    for (const code of codes) {
      const s = GRPC_STATUS[code];
      if (ERRORS[code].outcome === 'indeterminate') expect([code, [status.DEADLINE_EXCEEDED, status.INTERNAL].includes(s)]).toEqual([code, true]);
      if (s === status.UNAVAILABLE || s === status.DEADLINE_EXCEEDED) expect([code, ERRORS[code].outcome]).toEqual([code, s === status.UNAVAILABLE ? 'definite' : 'indeterminate']);
    }
  });

  test('follows the HTTP status where gRPC has a twin: 400s are INVALID_ARGUMENT, 503s UNAVAILABLE, 504s DEADLINE_EXCEEDED', () => {
    for (const code of codes) {
      const http = ERRORS[code].status;
      const want = http === 400 ? status.INVALID_ARGUMENT : http === 503 ? status.UNAVAILABLE : http === 504 ? status.DEADLINE_EXCEEDED : undefined;
      if (want !== undefined) expect([code, GRPC_STATUS[code]]).toEqual([code, want]);
    }
  });

  test('a failed call carries the message, and the code and outcome in its trailing metadata', () => {
    const e = grpcError(new KvError('replication_timeout', 'the follower did not answer'));
    expect({ code: e.code, details: e.details, errorCode: e.metadata?.get(ERROR_CODE_METADATA), outcome: e.metadata?.get(OUTCOME_METADATA) }).toEqual({
      code: status.DEADLINE_EXCEEDED,
      details: 'the follower did not answer',
      errorCode: ['replication_timeout'],
      outcome: ['indeterminate'],
    });
  });
});
