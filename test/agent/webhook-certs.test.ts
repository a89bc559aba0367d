import { spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCertificates } from '../../agent/webhook/certs.js';
import { WebhookError } from '../../agent/webhook/errors.js';

// These tests run `tandem webhook certs` from the built CLI (`npx tsc -p tsconfig.json` first),
// which runs the machine's openssl.
const CLI = path.resolve('dist/agent/cli.js');
const DAY_MS = 24 * 60 * 60 * 1000;

let directory: string;

function certs(args: string[]) {
  return spawnSync(process.execPath, [CLI, 'webhook', 'certs', ...args], { encoding: 'utf8', timeout: 60_000 });
}

beforeAll(() => {
  directory = mkdtempSync(path.join(tmpdir(), 'tandem-webhook-certs-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('tandem webhook certs', () => {
  it('writes a CA and a serving certificate', () => {
    const out = path.join(directory, 'new');

    const result = certs(['--service', 'hooks', '--namespace', 'platform', '--out', out, '--days', '30']);
    const ca = new X509Certificate(readFileSync(path.join(out, 'ca.crt')));
    const serving = new X509Certificate(readFileSync(path.join(out, 'tls.crt')));
    const validDays = (Date.parse(serving.validTo) - Date.parse(serving.validFrom)) / DAY_MS;

    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toBe(readFileSync(path.join(out, 'ca.crt')).toString('base64'));
    expect(result.stderr).toContain('kubectl -n platform create secret tls hooks-tls');
    expect(ca.ca).toBe(true);
    expect(serving.ca).toBe(false);
    expect(serving.subjectAltName).toBe('DNS:hooks.platform.svc, DNS:hooks.platform.svc.cluster.local');
    expect(serving.checkIssued(ca)).toBe(true);
    expect(serving.verify(ca.publicKey)).toBe(true);
    expect(serving.keyUsage).toContain('1.3.6.1.5.5.7.3.1');
    expect(Math.round(validDays)).toBe(30);
    expect(serving.checkPrivateKey(createPrivateKey(readFileSync(path.join(out, 'tls.key'))))).toBe(true);
  });

  it('keeps the key private', () => {
    const out = path.join(directory, 'new');

    expect(statSync(path.join(out, 'tls.key')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(out, 'tls.crt')).mode & 0o777).toBe(0o644 & ~process.umask());
  });

  it('rejects existing files without --force', () => {
    const out = path.join(directory, 'new');
    const before = readFileSync(path.join(out, 'tls.crt'));

    const rejected = certs(['--service', 'hooks', '--namespace', 'platform', '--out', out]);
    const unchanged = readFileSync(path.join(out, 'tls.crt'));
    const forced = certs(['--service', 'hooks', '--namespace', 'platform', '--out', out, '--force']);

    expect(rejected.status).toBe(1);
    expect(rejected.stderr).toContain(`${path.join(out, 'ca.crt')} already exists. Choose an empty --out directory, or pass --force`);
    expect(unchanged).toEqual(before);
    expect(forced.status).toBe(0);
    expect(readFileSync(path.join(out, 'tls.crt'))).not.toEqual(before);
  });

  it('rejects a service name that is no DNS label', () => {
    const result = certs(['--service', 'Hooks_1', '--namespace', 'platform', '--out', path.join(directory, 'invalid')]);

    expect(result.status).toBe(1);
    expect(result.stderr).toContain('Invalid --service "Hooks_1": expected a Kubernetes name of at most 63 lower-case letters');
  });

  it('requires the options', () => {
    const result = certs(['--service', 'hooks']);

    expect(result.status).toBe(2);
    expect(result.stderr).toContain("required option '--namespace <namespace>' not specified");
  });

  it('names the fix when openssl is missing', async () => {
    const attempt = generateCertificates({ service: 'hooks', namespace: 'platform', outDir: path.join(directory, 'no-openssl'), days: 1, force: false, openssl: '/nonexistent/openssl' });

    await expect(attempt).rejects.toBeInstanceOf(WebhookError);
    await expect(attempt).rejects.toThrow('/nonexistent/openssl is not installed, and tandem webhook certs needs it to create certificates. Install it (Debian: apt-get install openssl)');
  });
});
