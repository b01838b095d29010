// Verifies one authserver access token with the npm `jose` package, independently of Python.
//
//   node verify.mjs <jwks_url> <issuer> <audience> <alg> <token>
//
// Prints the verified protected header and claims as JSON and exits 0; on any failure prints
// the error's code (never the token) to stderr and exits 1.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, issuer, audience, alg, token] = process.argv.slice(2);
if (!token) {
  console.error("usage: node verify.mjs <jwks_url> <issuer> <audience> <alg> <token>");
  process.exit(2);
}

try {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    algorithms: [alg],
    typ: "at+jwt",
    requiredClaims: ["sub", "jti", "exp", "iat"],
  });
  process.stdout.write(JSON.stringify({ header: protectedHeader, claims: payload }) + "\n");
} catch (error) {
  console.error(`refused: ${error.code ?? error.name}`);
  process.exit(1);
}
