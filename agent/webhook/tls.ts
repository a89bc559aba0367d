import { createHash, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../../supervisor/log.js';
import { WebhookError } from './errors.js';

/** TLS settings of every secure context. The API server speaks TLS 1.2 and 1.3. */
export const TLS_VERSION_OPTIONS = { minVersion: 'TLSv1.2' } as const satisfies SecureContextOptions;

/** A serving certificate with its private key, as read from the files. */
export interface KeyPair {
  cert: Buffer;
  key: Buffer;
  /** SHA-256 fingerprint of the certificate, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint: string;
  subjectAltName: string;
  validTo: string;
}

/** Settings for `server.setSecureContext` and `https.createServer`. */
export function secureContextOptions(pair: KeyPair): SecureContextOptions {
  return { cert: pair.cert, key: pair.key, ...TLS_VERSION_OPTIONS };
}

async function readPem(file: string, label: string, option: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new WebhookError(`Cannot read the TLS ${label} ${file}: ${(error as Error).message}. Mount the Secret with tls.crt and tls.key there, or set ${option}.`);
  }
}

/**
 * Reads a certificate and its key and checks that they form a pair that Node.js can serve.
 * Throws a WebhookError that names the file at fault.
 */
export async function loadKeyPair(certFile: string, keyFile: string): Promise<KeyPair> {
  const [cert, key] = await Promise.all([readPem(certFile, 'certificate', '--tls-cert'), readPem(keyFile, 'key', '--tls-key')]);

  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    throw new WebhookError(`Invalid TLS certificate ${certFile}: ${(error as Error).message}. Expected a PEM certificate, such as tls.crt of a kubernetes.io/tls Secret.`);
  }
  try {
    createSecureContext({ cert, key, ...TLS_VERSION_OPTIONS });
  } catch (error) {
    throw new WebhookError(
      `Invalid TLS key ${keyFile} for certificate ${certFile}: ${(error as Error).message}. Expected the PEM private key of that certificate, such as tls.key of the same Secret.`,
    );
  }
  return { cert, key, fingerprint: certificate.fingerprint256, subjectAltName: certificate.subjectAltName ?? '', validTo: certificate.validTo };
}

/** Time to wait after a file event before reading, so that a cert and key written together are read together. */
const SETTLE_MS = 100;
const POLL_INTERVAL_MS = 1000;

function contentHash(certificate: Buffer, key: Buffer): string {
  return createHash('sha256').update(certificate).update('\0').update(key).digest('hex');
}

/**
 * Watches the certificate and key files and calls `onReload` with each new valid pair. It watches
 * the directories that contain the files, because a Secret volume (and so cert-manager's renewal)
 * replaces files by swapping a `..data` symlink, which a watch on the old file would not see. Every
 * event leads to a read and a comparison of contents, so events that change nothing are harmless.
 * A new pair that is invalid, or a cert whose key is not yet written, is logged and the old pair
 * stays in use.
 */
export class KeyPairWatcher {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> = Promise.resolve();
  private currentHash: string;
  private lastFailureHash: string | undefined;
  private closed = false;

  constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    current: KeyPair,
    private readonly onReload: (pair: KeyPair) => void,
    private readonly logger: Logger,
  ) {
    this.currentHash = contentHash(current.cert, current.key);
  }

  async start(): Promise<void> {
    await this.startWatcher(false);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.watcher?.close();
    await this.checking;
  }

  /** Reads the files now and switches to them when they hold a new valid pair. */
  check(): Promise<void> {
    this.checking = this.checking
      .then(() => this.reload())
      .catch((error: unknown) => this.logger.error({ event: 'tls-reload-failed', err: error }, 'reloading the TLS files failed with an internal error'));
    return this.checking;
  }

  private scheduleCheck(): void {
    if (this.closed) {
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.check(), SETTLE_MS);
  }

  private async startWatcher(usePolling: boolean): Promise<void> {
    const directories = [...new Set([path.dirname(path.resolve(this.certFile)), path.dirname(path.resolve(this.keyFile))])];
    // Polling stats the file paths, which follow the symlinks of a Secret volume.
    const targets = usePolling ? [this.certFile, this.keyFile] : directories;
    const watcher = watch(targets, { depth: 0, ignoreInitial: true, usePolling, interval: POLL_INTERVAL_MS });
    this.watcher = watcher;
    watcher.on('all', () => this.scheduleCheck());
    watcher.on('raw', () => this.scheduleCheck());
    watcher.on('error', (error) => void this.onWatchError(error as NodeJS.ErrnoException, usePolling));
    await new Promise<void>((resolve) => watcher.once('ready', resolve));
  }

  // inotify can run out of watches or instances on a busy node, so the watcher falls back to polling.
  private async onWatchError(error: NodeJS.ErrnoException, usePolling: boolean): Promise<void> {
    if (this.closed) {
      return;
    }
    if (usePolling) {
      this.logger.error({ event: 'tls-watch-failed', err: error }, 'watching the TLS files failed, so certificate changes are not picked up until a restart');
      return;
    }
    this.logger.warn({ event: 'tls-watch-polling', err: error, intervalMs: POLL_INTERVAL_MS }, 'watching the TLS files with inotify failed, so they are polled instead');
    await this.watcher?.close();
    await this.startWatcher(true);
  }

  private async reload(): Promise<void> {
    if (this.closed) {
      return;
    }
    let cert: Buffer;
    let key: Buffer;
    try {
      [cert, key] = await Promise.all([readFile(this.certFile), readFile(this.keyFile)]);
    } catch (error) {
      // A Secret update removes the old files just before the new link appears, and the next event rereads them.
      this.logger.debug({ event: 'tls-read-failed', err: error }, 'TLS files not readable yet');
      return;
    }
    const hash = contentHash(cert, key);
    if (hash === this.currentHash || hash === this.lastFailureHash) {
      return;
    }

    let pair: KeyPair;
    try {
      pair = await loadKeyPair(this.certFile, this.keyFile);
    } catch (error) {
      if (!(error instanceof WebhookError)) {
        throw error;
      }
      this.lastFailureHash = hash;
      this.logger.error({ event: 'tls-reload-failed', certFile: this.certFile, keyFile: this.keyFile, err: error.message }, 'new TLS certificate or key is invalid, so the current pair stays in use');
      return;
    }
    this.currentHash = contentHash(pair.cert, pair.key);
    this.lastFailureHash = undefined;
    this.onReload(pair);
  }
}
