// node-oidc-provider as the peer of bench/compare.py: one provider, configured like authserver's
// benchmark (JWT access tokens, client_credentials, refresh-token rotation, authorization code
// with PKCE S256), for benchmarking only.
//
//   node server.mjs --port 4000 --alg RS256|EdDSA --workers 2 --secret S
//                   [--store memory|redis --redis redis://127.0.0.1:6379 --redis-prefix P]
//
// Workers run under node:cluster and share the port. The primary makes the one signing key
// (RSA 2048 or Ed25519, as authserver's) and hands it to every worker, so all sign alike.
//
// --store memory (the default): oidc-provider's own in-memory adapter, one store per process:
// with more than one worker, a code, grant or refresh token made by one worker is unknown to the
// others, so the stateful paths (rotation, code exchange) need --workers 1. The adapter's store
// is its own LRU (lib/helpers/lru.js) sized 1,000,000 entries instead of the default 1,000,
// which would evict a pool of codes minted ahead of the exchange benchmark.
//
// --store redis: the peer as its users deploy it, every worker on one Redis through
// redis_adapter.mjs (oidc-provider's example Redis adapter), each key under --redis-prefix so
// that the benchmark can delete the run's keys and no one else's.
//
// Sign-in: /interaction/:uid signs the one account `bench` in and grants what was asked at once
// (no page): the benchmark drives /auth -> /interaction -> /auth/:uid once for a session
// cookie, then /auth with that cookie answers each request with a code, as authserver's
// /authorize does with its login session.
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

import redisAdapter from './redis_adapter.mjs';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    alg: { type: 'string', default: 'RS256' },
    workers: { type: 'string', default: '1' },
    secret: { type: 'string' },
    store: { type: 'string', default: 'memory' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    'redis-prefix': { type: 'string', default: 'oidc:' },
  },
});
if (!['memory', 'redis'].includes(opts.store)) throw new Error(`--store: ${opts.store}`);
const RESOURCE = 'https://api.example';
const REDIRECT_URI = 'http://127.0.0.1/cb';

function signingKey(alg) {
  const pair = alg === 'EdDSA'
    ? crypto.generateKeyPairSync('ed25519')
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: crypto.randomBytes(8).toString('hex') };
}

if (cluster.isPrimary && Number(opts.workers) > 1) {
  const env = {
    PEER_JWK: JSON.stringify(signingKey(opts.alg)),
    PEER_COOKIE_KEY: crypto.randomBytes(32).toString('hex'),
  };
  for (let i = 0; i < Number(opts.workers); i += 1) cluster.fork(env);
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  if (!cluster.isPrimary) process.on('disconnect', () => process.exit(0));
  const jwk = process.env.PEER_JWK ? JSON.parse(process.env.PEER_JWK) : signingKey(opts.alg);
  const cookieKey = process.env.PEER_COOKIE_KEY ?? crypto.randomBytes(32).toString('hex');
  const issuer = `http://127.0.0.1:${opts.port}`;
  let adapter;
  if (opts.store === 'redis') {
    adapter = redisAdapter(opts.redis, opts['redis-prefix']);
  } else {
    const store = new LRU({ maxSize: 1_000_000 });
    adapter = (model) => new MemoryAdapter(model, store);
  }

  const provider = new Provider(issuer, {
    adapter,
    jwks: { keys: [jwk] },
    cookies: { keys: [cookieKey] },
    clientDefaults: { id_token_signed_response_alg: jwk.alg },
    clients: [
      {
        client_id: 'svc',
        client_secret: opts.secret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: 'app',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
      },
    ],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async () => ({
          scope: 'api',
          audience: RESOURCE,
          accessTokenTTL: 900,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: jwk.alg } },
        }),
      },
    },
    pkce: { required: () => true },
    // Codes are minted ahead of the exchange run, as many as it may spend: 10 minutes instead of
    // 60 s, so none expires while the pool is minted (the lifetime costs nothing per request).
    ttl: { AuthorizationCode: 600 },
    rotateRefreshToken: true,
    // Every code exchange starts a refresh family, as authserver's does (the default issues
    // one only for offline_access), and tokens do not end with the browser session.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  });

  provider.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/interaction/')) return next();
    const { params } = await provider.interactionDetails(ctx.req, ctx.res);
    const grant = new provider.Grant({ accountId: 'bench', clientId: params.client_id });
    grant.addOIDCScope('openid');
    grant.addResourceScope(RESOURCE, 'api');
    const result = { login: { accountId: 'bench' }, consent: { grantId: await grant.save() } };
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: false,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return undefined;
  });

  provider.listen(Number(opts.port), '127.0.0.1', () => {
    console.log(`peer listening: pid ${process.pid}, ${issuer}, ${jwk.alg}, ${opts.store}`);
  });
}
