/**
 * `tandem webhook certs`: a self-signed CA and a serving certificate for the webhook's Service.
 *
 * openssl does the work, run through execa. Node.js can create keys but not X.509 certificates,
 * and openssl is on most machines that run kubectl (Debian's package `openssl`), so no npm
 * dependency is added. node-forge, the usual pure JavaScript choice, would add a large crypto
 * library to the runtime that every pod copies, for a command that runs on an admin's machine.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { WebhookError } from './errors.js';

export interface CertificateOptions {
  /** Name of the webhook's Service. */
  service: string;
  namespace: string;
  outDir: string;
  /** Validity of both certificates, in days. */
  days: number;
  /** Overwrites existing files in outDir. */
  force: boolean;
  /** The openssl program, replaced in tests. */
  openssl?: string;
}

export interface GeneratedCertificates {
  /** Base64 of ca.crt, the value of caBundle in the MutatingWebhookConfiguration. */
  caBundle: string;
  files: { ca: string; cert: string; key: string };
  /** DNS names of the serving certificate. */
  dnsNames: string[];
}

export const OUTPUT_FILES = { ca: 'ca.crt', cert: 'tls.crt', key: 'tls.key' } as const;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Checks a Service or namespace name, which Kubernetes requires to be a DNS label (RFC 1123). */
export function checkDnsLabel(value: string, option: string): void {
  if (value.length > 63 || !DNS_LABEL.test(value)) {
    throw new WebhookError(
      `Invalid ${option} ${JSON.stringify(value)}: expected a Kubernetes name of at most 63 lower-case letters, digits and dashes, starting and ending with a letter or digit.`,
    );
  }
}

async function runOpenssl(program: string, args: string[], cwd: string): Promise<void> {
  const result = await execa(program, args, { cwd, reject: false, stdin: 'ignore' });
  if (result.failed) {
    const missing = (result as { code?: string }).code === 'ENOENT';
    if (missing) {
      throw new WebhookError(
        `${program} is not installed, and tandem webhook certs needs it to create certificates. Install it (Debian: apt-get install openssl), or let cert-manager issue them (deploy/cert-manager).`,
      );
    }
    const detail = result.stderr.trim().split('\n').slice(-3).join(' ') || `exit code ${result.exitCode}`;
    throw new WebhookError(`\`${program} ${args.join(' ')}\` failed: ${detail}`);
  }
}

async function checkNotPresent(outDir: string): Promise<void> {
  for (const name of Object.values(OUTPUT_FILES)) {
    const file = path.join(outDir, name);
    try {
      await access(file, constants.F_OK);
    } catch {
      continue;
    }
    throw new WebhookError(`${file} already exists. Choose an empty --out directory, or pass --force to replace the files.`);
  }
}

async function installFile(source: string, target: string, mode: number): Promise<void> {
  const temporary = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, await readFile(source), { mode, flag: 'wx' });
  await rename(temporary, target);
}

// An openssl configuration with the extensions of both certificates. Passing it with -config keeps
// the system's openssl.cnf defaults out of the certificates.
function opensslConfig(dnsNames: readonly string[]): string {
  return [
    '[req]',
    'distinguished_name = subject',
    'prompt = no',
    '[subject]',
    'CN = tandem-webhook',
    '[ca]',
    'basicConstraints = critical, CA:TRUE, pathlen:0',
    'keyUsage = critical, keyCertSign, cRLSign',
    'subjectKeyIdentifier = hash',
    '[serving]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = ${dnsNames.map((name) => `DNS:${name}`).join(', ')}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    '',
  ].join('\n');
}

/**
 * Creates a CA and a serving certificate for `SERVICE.NAMESPACE.svc`, the name the API server
 * checks when it calls a webhook through a Service, and writes ca.crt, tls.crt and tls.key (mode
 * 0600) into outDir. Keys are ECDSA P-256. The CA's key is deleted, so a renewal makes a new CA and
 * the caBundle must be updated with it.
 */
export async function generateCertificates(options: CertificateOptions): Promise<GeneratedCertificates> {
  checkDnsLabel(options.service, '--service');
  checkDnsLabel(options.namespace, '--namespace');
  if (!Number.isInteger(options.days) || options.days < 1) {
    throw new WebhookError(`Invalid --days ${options.days}: expected a whole number of days, 1 or more.`);
  }
  const openssl = options.openssl ?? 'openssl';
  const dnsNames = [`${options.service}.${options.namespace}.svc`, `${options.service}.${options.namespace}.svc.cluster.local`];

  await mkdir(options.outDir, { recursive: true });
  if (!options.force) {
    await checkNotPresent(options.outDir);
  }

  const work = await mkdtemp(path.join(tmpdir(), 'tandem-certs-'));
  try {
    await writeFile(path.join(work, 'openssl.cnf'), opensslConfig(dnsNames));
    const days = String(options.days);
    const ecKey = ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out'];
    await runOpenssl(openssl, [...ecKey, 'ca.key'], work);
    await runOpenssl(openssl, [...ecKey, 'tls.key'], work);
    await runOpenssl(
      openssl,
      ['req', '-x509', '-new', '-config', 'openssl.cnf', '-extensions', 'ca', '-key', 'ca.key', '-subj', '/CN=tandem-webhook-ca', '-days', days, '-sha256', '-out', 'ca.crt'],
      work,
    );
    await runOpenssl(openssl, ['req', '-new', '-config', 'openssl.cnf', '-key', 'tls.key', '-subj', `/CN=${dnsNames[0]}`, '-out', 'tls.csr'], work);
    await runOpenssl(
      openssl,
      [
        'x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(16).toString('hex')}`,
        '-days', days, '-sha256', '-extfile', 'openssl.cnf', '-extensions', 'serving', '-out', 'tls.crt',
      ],
      work,
    );

    const files = {
      ca: path.join(options.outDir, OUTPUT_FILES.ca),
      cert: path.join(options.outDir, OUTPUT_FILES.cert),
      key: path.join(options.outDir, OUTPUT_FILES.key),
    };
    // Each file is written under a temporary name and renamed, so a webhook that watches outDir
    // never reads a half-written file, and the key is never readable by others, even briefly.
    await installFile(path.join(work, 'tls.key'), files.key, 0o600);
    await installFile(path.join(work, 'ca.crt'), files.ca, 0o644);
    await installFile(path.join(work, 'tls.crt'), files.cert, 0o644);

    const caBundle = (await readFile(files.ca)).toString('base64');
    return { caBundle, files, dnsNames };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
