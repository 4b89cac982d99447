import { KvClient, KvClientError } from '@shardkv/client';
import { EtcdCluster } from '@shardkv/tools';
import { http, startCluster, type TestCluster } from './helpers';

/**
 * The rate limit holds across several routers: two routers on a (one-member) etcd control plane
 * each enforce half of the cluster-wide limit, so a client pinned to one router gets its half, a
 * client using both gets the whole limit, and never more.
 */
const REQUESTS = 4;
let etcd: EtcdCluster | undefined;
let cluster: TestCluster | undefined;

beforeAll(async () => {
  etcd = await EtcdCluster.create({ members: 1 });
  await etcd.start();
  // RATE_LIMIT_ROUTERS is set to 2 by the cluster itself, as `npm run start:ha` does.
  cluster = await startCluster({ shardCount: 1, routers: 2, etcdEndpoints: etcd.endpoints, env: { RATE_LIMIT_REQUESTS: String(REQUESTS), RATE_LIMIT_WINDOW_MS: '60000' } });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
  await etcd?.stop();
}, 30_000);

const put = (router: string, token: string, key: string) => http('POST', `${router}/put`, { key, value: 'v' }, { authorization: `Bearer ${token}` });

test('each router allows its share; together they allow the cluster-wide limit and no more', async () => {
  const [a, b] = cluster!.routers.map((r) => r.url) as [string, string];
  const statuses = async (router: string, n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i += 1) out.push((await put(router, 'token-pinned', `pinned-${i}`)).status);
    return out;
  };
  expect(await statuses(a, 3)).toEqual([200, 200, 429]);
  expect(await statuses(b, 3)).toEqual([200, 200, 429]);
});

test('the typed client, given both routers, moves on at a 429 and gets the whole limit', async () => {
  const client = new KvClient(cluster!.routers.map((r) => r.url), { token: 'token-spread' });
  try {
    for (let i = 0; i < REQUESTS; i += 1) await client.put(`s-${i}`, 'v');
    const err = await client.put('s-over', 'v').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(KvClientError);
    expect(err).toMatchObject({ code: 'rate_limited', outcome: 'definite' });
  } finally {
    await client.close();
  }
});
