// The Redis side of bench/compare.py, with the peer's own client (ioredis, pinned):
//
//   node redis_store.mjs info  --redis URL                 one line: version, persistence, memory
//   node redis_store.mjs flush --redis URL --prefix P      deletes every key under P, prints how many
//
// Only the run's own prefix is deleted (SCAN + UNLINK): the Redis server may be shared, and
// FLUSHDB would take other users' keys with it.
import { parseArgs } from 'node:util';

import Redis from 'ioredis';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    prefix: { type: 'string' },
  },
});
// One attempt, no reconnecting: a Redis that is not there is an error to report, not to wait out.
const client = new Redis(opts.redis, {
  lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null,
});
let cause; // the socket's error (ECONNREFUSED …): the failed command only says "closed"
client.on('error', (err) => { cause = err; });

async function info() {
  const server = await client.info('server');
  const memory = await client.info('memory');
  const field = (text, name) => text.match(new RegExp(`^${name}:(.*)$`, 'm'))?.[1]?.trim();
  const [, save] = await client.config('GET', 'save');
  const [, appendonly] = await client.config('GET', 'appendonly');
  const onDisk = save === '' && appendonly === 'no' ? 'nothing on disk' : 'persists to disk';
  console.log(
    `Redis ${field(server, 'redis_version')} at ${opts.redis}: save "${save}", `
    + `appendonly ${appendonly} (${onDisk}), ${field(memory, 'used_memory_human')} used`,
  );
}

async function flush() {
  if (!opts.prefix) throw new Error('flush needs --prefix');
  let deleted = 0;
  const stream = client.scanStream({ match: `${opts.prefix}*`, count: 1000 });
  for await (const keys of stream) {
    if (keys.length) deleted += await client.unlink(...keys);
  }
  console.log(deleted);
}

try {
  await client.connect();
  if (positionals[0] === 'info') await info();
  else if (positionals[0] === 'flush') await flush();
  else throw new Error('usage: redis_store.mjs info|flush --redis URL [--prefix P]');
} catch (err) {
  console.error(`Redis at ${opts.redis}: ${(cause ?? err).message}`);
  process.exitCode = 1;
} finally {
  client.disconnect();
}
