import { z } from 'zod';
import { isEntry, replicateRequestSchema } from './messages';

/** The entry's rule as a schema: the reference the plain check is held to. */
const entrySchema = z.discriminatedUnion('op', [
  z.object({ seq: z.number().int().positive(), op: z.literal('put'), key: z.string().min(1), value: z.string() }),
  z.object({ seq: z.number().int().positive(), op: z.literal('del'), key: z.string().min(1) }),
]);

// The follower's entry check must accept and refuse exactly what the entry schema does (plus:
// no extra fields, since the follower logs the entry as it received it).
const samples: unknown[] = [
  { seq: 1, op: 'put', key: 'k', value: '' },
  { seq: 7, op: 'del', key: 'k' },
  { seq: 0, op: 'put', key: 'k', value: 'v' },
  { seq: 1.5, op: 'put', key: 'k', value: 'v' },
  { seq: '1', op: 'put', key: 'k', value: 'v' },
  { seq: 1, op: 'put', key: '', value: 'v' },
  { seq: 1, op: 'put', key: 'k' },
  { seq: 1, op: 'put', key: 'k', value: 3 },
  { seq: 1, op: 'del' },
  { seq: 1, op: 'get', key: 'k' },
  null,
  'entry',
  [1, 'put', 'k', 'v'],
];

describe('isEntry (the follower\'s check of replicated entries)', () => {
  test.each(samples.map((s) => [JSON.stringify(s), s]))('agrees with the entry schema on %s', (_name, sample) => {
    expect(isEntry(sample)).toBe(entrySchema.safeParse(sample).success);
  });

  test('refuses entries with fields the leader never sends', () => {
    expect(isEntry({ seq: 1, op: 'put', key: 'k', value: 'v', extra: 1 })).toBe(false);
    expect(isEntry({ seq: 1, op: 'del', key: 'k', value: 'v' })).toBe(false);
  });

  test('a replicate message with one bad entry is refused whole', () => {
    const msg = { shard: 's', epoch: 1, logStartSeq: 1, lastSeq: 2, term: 't', termStartSeq: 0, termStartDigest: '0'.repeat(32), entries: [{ seq: 1, op: 'put', key: 'a', value: '1' }, { seq: 2, op: 'put', key: '', value: '2' }] };
    expect(replicateRequestSchema.safeParse(msg).success).toBe(false);
    msg.entries[1]!.key = 'b';
    expect(replicateRequestSchema.safeParse(msg).success).toBe(true);
  });
});
