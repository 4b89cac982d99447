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
});
