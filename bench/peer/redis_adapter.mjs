// oidc-provider's example Redis adapter, as its users deploy the peer: one store shared by every
// cluster worker. Taken from node-oidc-provider's example/adapters/redis.js at its last version in
// the repository (the parent of ba806ca8, March 2025; since 9.0.0 the example lives in the
// project's GitHub Discussions, #1309, and the repository keeps only the in-memory adapter), with
// these changes and no others:
//
// - the client is made by `redisAdapter(url, keyPrefix)` instead of at import, so the benchmark
//   gives each run a key prefix of its own and can delete exactly those keys between runs (the
//   Redis server is shared; FLUSHDB would take other users' keys with it);
// - lodash's isEmpty (not a dependency of oidc-provider 9) is spelled out: hgetall answers {}
//   and get answers null for a missing key;
// - ioredis 6.1.0 (pinned in package.json) where the example's comment says ^4: the calls used
//   here (multi, hmset with an object, expire, rpush, ttl, lrange, hgetall, hset) are unchanged.
//
// Like the example, consumable models (codes, refresh tokens) are hashes so that consume() is one
// HSET; every other model is a JSON string; a grant's tokens are listed under grant:<id>.
import Redis from 'ioredis';

const grantable = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

const consumable = new Set([
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

function grantKeyFor(id) {
  return `grant:${id}`;
}

function userCodeKeyFor(userCode) {
  return `userCode:${userCode}`;
}

function uidKeyFor(uid) {
  return `uid:${uid}`;
}

function isEmpty(data) {
  return data == null || (typeof data === 'object' && Object.keys(data).length === 0);
}

export default function redisAdapter(url, keyPrefix) {
  const client = new Redis(url, { keyPrefix });

  class RedisAdapter {
    constructor(name) {
      this.name = name;
    }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const store = consumable.has(this.name)
        ? { payload: JSON.stringify(payload) } : JSON.stringify(payload);

      const multi = client.multi();
      multi[consumable.has(this.name) ? 'hmset' : 'set'](key, store);

      if (expiresIn) {
        multi.expire(key, expiresIn);
      }

      if (grantable.has(this.name) && payload.grantId) {
        const grantKey = grantKeyFor(payload.grantId);
        multi.rpush(grantKey, key);
        // if you're seeing grant key lists growing out of acceptable proportions consider using
        // LTRIM here to trim the list to an appropriate length
        const ttl = await client.ttl(grantKey);
        if (expiresIn > ttl) {
          multi.expire(grantKey, expiresIn);
        }
      }

      if (payload.userCode) {
        const userCodeKey = userCodeKeyFor(payload.userCode);
        multi.set(userCodeKey, id);
        multi.expire(userCodeKey, expiresIn);
      }

      if (payload.uid) {
        const uidKey = uidKeyFor(payload.uid);
        multi.set(uidKey, id);
        multi.expire(uidKey, expiresIn);
      }

      await multi.exec();
    }

    async find(id) {
      const data = consumable.has(this.name)
        ? await client.hgetall(this.key(id))
        : await client.get(this.key(id));

      if (isEmpty(data)) {
        return undefined;
      }

      if (typeof data === 'string') {
        return JSON.parse(data);
      }
      const { payload, ...rest } = data;
      return {
        ...rest,
        ...JSON.parse(payload),
      };
    }

    async findByUid(uid) {
      const id = await client.get(uidKeyFor(uid));
      return this.find(id);
    }

    async findByUserCode(userCode) {
      const id = await client.get(userCodeKeyFor(userCode));
      return this.find(id);
    }

    async destroy(id) {
      const key = this.key(id);
      await client.del(key);
    }

    async revokeByGrantId(grantId) { // eslint-disable-line class-methods-use-this
      const multi = client.multi();
      const tokens = await client.lrange(grantKeyFor(grantId), 0, -1);
      tokens.forEach((token) => multi.del(token));
      multi.del(grantKeyFor(grantId));
      await multi.exec();
    }

    async consume(id) {
      await client.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000));
    }

    key(id) {
      return `${this.name}:${id}`;
    }
  }

  return RedisAdapter;
}
