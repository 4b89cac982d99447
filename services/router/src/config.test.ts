import { defaultShards, loadConfig, parseShardList } from './config';

describe('router config', () => {
  test('defaults to 3 shards on the documented ports', () => {
    expect(loadConfig({}).shards).toEqual(defaultShards(3));
    expect(defaultShards(3)[2]).toEqual({ id: 'shard-2', leader: 'http://127.0.0.1:5003', follower: 'http://127.0.0.1:6003' });
  });

  test('SHARD_COUNT gives N shards', () => {
    expect(loadConfig({ SHARD_COUNT: '5' }).shards.map((s) => s.id)).toEqual(['shard-0', 'shard-1', 'shard-2', 'shard-3', 'shard-4']);
  });

  test('SHARDS lists ids and addresses explicitly', () => {
    const shards = parseShardList('a=http://h1:1,http://h2:2; b=http://h3:3/,http://h4:4');
    expect(shards).toEqual([
      { id: 'a', leader: 'http://h1:1', follower: 'http://h2:2' },
      { id: 'b', leader: 'http://h3:3', follower: 'http://h4:4' },
    ]);
  });

  test('rejects a malformed SHARDS, duplicate ids and a bad port', () => {
    expect(() => parseShardList('a=http://h1:1')).toThrow(/invalid SHARDS/);
    expect(() => parseShardList('a=http://h1:1,http://h2:2;a=http://h3:3,http://h4:4')).toThrow(/unique/);
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/PORT/);
  });

  test('rate limits are off by default and when RATE_LIMIT_REQUESTS is 0', () => {
    expect(loadConfig({}).rateLimit).toBeUndefined();
    expect(loadConfig({ RATE_LIMIT_REQUESTS: '0', RATE_LIMIT_ROUTERS: '3' }).rateLimit).toBeUndefined();
  });

  test('each router enforces its share of the cluster-wide rate limit, rounded down', () => {
    expect(loadConfig({ RATE_LIMIT_REQUESTS: '1000' }).rateLimit).toEqual({ requestsPerWindow: 1000, windowMs: 1000 });
    expect(loadConfig({ RATE_LIMIT_REQUESTS: '1000', RATE_LIMIT_WINDOW_MS: '5000', RATE_LIMIT_ROUTERS: '3' }).rateLimit).toEqual({ requestsPerWindow: 333, windowMs: 5000 });
  });

  test('rejects a rate limit that would allow nothing, and windows out of bounds', () => {
    expect(() => loadConfig({ RATE_LIMIT_REQUESTS: '2', RATE_LIMIT_ROUTERS: '3' })).toThrow(/RATE_LIMIT_REQUESTS \(2\) is less than RATE_LIMIT_ROUTERS \(3\)/);
    expect(() => loadConfig({ RATE_LIMIT_REQUESTS: '10', RATE_LIMIT_WINDOW_MS: '5' })).toThrow(/RATE_LIMIT_WINDOW_MS/);
    expect(() => loadConfig({ RATE_LIMIT_REQUESTS: '-1' })).toThrow(/RATE_LIMIT_REQUESTS/);
    expect(() => loadConfig({ RATE_LIMIT_REQUESTS: '10', RATE_LIMIT_ROUTERS: '0' })).toThrow(/RATE_LIMIT_ROUTERS/);
  });

  test('serves gRPC 100 above PORT by default, on GRPC_PORT when given, not at all with GRPC_PORT=off', () => {
    expect(loadConfig({}).grpc).toMatchObject({ host: '127.0.0.1', port: 5100, receiveMessageBytesMax: 2 * 1024 * 1024 });
    expect(loadConfig({ PORT: '5010' }).grpc?.port).toBe(5110);
    expect(loadConfig({ PORT: '0' }).grpc?.port).toBe(0);
    expect(loadConfig({ GRPC_PORT: '7000' }).grpc?.port).toBe(7000);
    expect(loadConfig({ GRPC_PORT: 'off' }).grpc).toBeUndefined();
    expect(loadConfig({ GRPC_PORT: '' }).grpc?.port).toBe(5100);
    expect(() => loadConfig({ GRPC_PORT: 'on' })).toThrow(/GRPC_PORT/);
    expect(() => loadConfig({ PORT: '65500' })).toThrow(/GRPC_PORT/);
    expect(() => loadConfig({ PORT: '6000', GRPC_PORT: '6000' })).toThrow(/GRPC_PORT/);
  });
});
