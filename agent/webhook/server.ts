import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../supervisor/log.js';
import { reviewAdmission, statusBody } from './admission.js';
import { WebhookError } from './errors.js';
import type { PodMutationOptions } from './mutate.js';
import { KeyPairWatcher, loadKeyPair, secureContextOptions, type KeyPair } from './tls.js';

/**
 * Maximum AdmissionReview body accepted by default: 3 MiB, the API server's own default limit on a
 * request body (MaxRequestBodyBytes of k8s.io/apiserver). A pod that etcd can store, 1.5 MiB with
 * etcd's default request limit, fits with room for the review around it.
 */
export const DEFAULT_MAX_REQUEST_BYTES = 3 * 1024 * 1024;

/**
 * Idle time after which a kept-alive connection is closed. It is longer than the 90 s
 * IdleConnTimeout that the API server's client takes from Go's http.DefaultTransport
 * (k8s.io/apimachinery/pkg/util/net SetOldTransportDefaults), so the client closes idle
 * connections first and never sends a request into a connection that the webhook is closing.
 */
const KEEP_ALIVE_TIMEOUT_MS = 120_000;
/** The API server waits at most 30 s (the maximum timeoutSeconds) for a webhook. */
const REQUEST_TIMEOUT_MS = 30_000;
const HEADERS_TIMEOUT_MS = 10_000;
const HANDSHAKE_LOG_INTERVAL_MS = 60_000;

export interface WebhookServerOptions {
  /** Address to listen on, or undefined for every address. */
  host: string | undefined;
  /** TCP port, or 0 for a free one. */
  port: number;
  certFile: string;
  keyFile: string;
  maxRequestBytes: number;
  mutation: PodMutationOptions;
  logger: Logger;
}

export interface WebhookServer {
  /** The port the server listens on. */
  readonly port: number;
  /** The certificate being served. */
  readonly keyPair: KeyPair;
  /** Makes /readyz fail and closes each connection after its current response, while still serving. */
  startDraining(): void;
  /**
   * Stops accepting connections, waits for the requests in progress and stops the TLS watcher.
   * Connections still open after `timeoutMs` are destroyed, and the result is then false.
   */
  close(timeoutMs: number): Promise<boolean>;
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  response.end(text);
}

function sendText(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  response.end(text);
}

type BodyResult = { body: Buffer } | { tooLarge: true; receivedBytes: number };

/** The client closed the connection before it sent the whole body, as the API server does at its timeout. */
class RequestClosedError extends Error {
  override name = 'RequestClosedError';
}

/**
 * Reads the request body up to `limit` bytes. A larger body is not read further: a declared
 * Content-Length over the limit is rejected before any byte is read, and a chunked body stops
 * being read at the first chunk that crosses the limit.
 */
function readBody(request: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    request.pause();
    return Promise.resolve({ tooLarge: true, receivedBytes: 0 });
  }

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limit) {
        request.off('data', onData);
        request.off('end', onEnd);
        request.pause();
        resolve({ tooLarge: true, receivedBytes: received });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => resolve({ body: Buffer.concat(chunks) });
    request.on('data', onData);
    request.on('end', onEnd);
    // Node.js reports a connection reset during the body as an 'error' (ECONNRESET, "aborted").
    // 'close' also follows a complete body, when the promise is already settled and this does nothing.
    request.on('error', (error) => reject(new RequestClosedError(`reading the request body failed after ${received} bytes: ${error.message}`)));
    request.on('close', () => reject(new RequestClosedError(`connection closed after ${received} bytes of the request body`)));
  });
}

function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined || value === '') {
    return true;
  }
  const type = value.split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || type.endsWith('+json');
}

/**
 * Starts the HTTPS server of `tandem webhook`: POST /mutate reviews AdmissionReviews, GET /healthz
 * reports that the process serves requests, and GET /readyz that it takes new ones. The certificate
 * and key are read before the server listens and reloaded when their files change.
 */
export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const { logger } = options;
  let keyPair = await loadKeyPair(options.certFile, options.keyFile);
  let draining = false;

  const server: Server = createServer({
    ...secureContextOptions(keyPair),
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    headersTimeout: HEADERS_TIMEOUT_MS,
  });

  const mutate = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const started = performance.now();
    const remote = request.socket.remoteAddress;
    if (request.method !== 'POST') {
      response.setHeader('Allow', 'POST');
      sendJson(response, 405, statusBody(405, `Method ${request.method} is not allowed on /mutate. Send the AdmissionReview with POST.`));
      return;
    }
    if (!isJsonContentType(request.headers['content-type'])) {
      const message = `Content-Type ${request.headers['content-type']} is not supported. Send the AdmissionReview as application/json.`;
      logger.warn({ event: 'admission-invalid', remote, decision: 'invalid', message }, 'admission review rejected');
      sendJson(response, 415, statusBody(415, message));
      return;
    }

    const result = await readBody(request, options.maxRequestBytes);
    if ('tooLarge' in result) {
      const message =
        `The request body is larger than ${options.maxRequestBytes} bytes (Content-Length ${request.headers['content-length'] ?? 'not set'}). ` +
        'Raise --max-request-bytes if pods of that size are expected.';
      logger.warn({ event: 'admission-invalid', remote, decision: 'too large', receivedBytes: result.receivedBytes, message }, 'admission review rejected');
      // The rest of the body is never read, so the connection cannot carry another request.
      response.setHeader('Connection', 'close');
      sendJson(response, 413, statusBody(413, message));
      return;
    }

    const outcome = await reviewAdmission(result.body.toString('utf8'), options.mutation);
    sendJson(response, outcome.httpStatus, outcome.body);
    const fields = { event: 'admission', ...outcome.log, durationMs: Math.round((performance.now() - started) * 1000) / 1000 };
    if (outcome.httpStatus !== 200 || outcome.log.decision === 'invalid') {
      logger.warn({ ...fields, remote }, 'admission review rejected');
    } else {
      logger.info(fields, 'admission review');
    }
  };

  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    if (draining) {
      response.setHeader('Connection', 'close');
    }
    // Split by hand, because new URL() throws on some malformed request targets.
    const pathname = (request.url ?? '/').split('?')[0]!;
    const handle = async (): Promise<void> => {
      if (pathname === '/mutate') {
        await mutate(request, response);
      } else if (pathname === '/healthz' && (request.method === 'GET' || request.method === 'HEAD')) {
        sendText(response, 200, 'ok\n');
      } else if (pathname === '/readyz' && (request.method === 'GET' || request.method === 'HEAD')) {
        sendText(response, draining ? 503 : 200, draining ? 'shutting down\n' : 'ok\n');
      } else {
        sendJson(response, 404, statusBody(404, `No handler for ${request.method} ${pathname}. The webhook serves POST /mutate, GET /healthz and GET /readyz.`));
      }
    };
    handle().catch((error: unknown) => {
      if (error instanceof RequestClosedError) {
        logger.warn({ event: 'admission-aborted', remote: request.socket.remoteAddress, err: error.message }, 'client closed the connection before the request was complete');
        return;
      }
      logger.error({ event: 'internal-error', err: error, path: pathname }, 'request failed with an internal error');
      if (!response.headersSent) {
        sendJson(response, 500, statusBody(500, `Internal error in tandem webhook: ${(error as Error).message}. The webhook log has the stack trace.`));
      } else {
        response.destroy();
      }
    });
  });
  // A client that rejects the certificate (a caBundle that does not match it) shows up here. Scanners
  // and probes can cause many of these, so one line per minute carries the count of the others.
  let lastHandshakeLog = 0;
  let suppressedHandshakeErrors = 0;
  server.on('tlsClientError', (error, socket) => {
    const now = Date.now();
    if (now - lastHandshakeLog < HANDSHAKE_LOG_INTERVAL_MS) {
      suppressedHandshakeErrors += 1;
      return;
    }
    logger.warn(
      { event: 'tls-handshake-failed', err: error.message, remote: socket.remoteAddress, fingerprint: keyPair.fingerprint, suppressed: suppressedHandshakeErrors },
      'TLS handshake failed. If the client is the API server, check that the caBundle contains the CA of this certificate',
    );
    lastHandshakeLog = now;
    suppressedHandshakeErrors = 0;
  });

  const watcher = new KeyPairWatcher(
    options.certFile,
    options.keyFile,
    keyPair,
    (pair) => {
      server.setSecureContext(secureContextOptions(pair));
      logger.info(
        { event: 'tls-reloaded', fingerprint: pair.fingerprint, previousFingerprint: keyPair.fingerprint, subjectAltName: pair.subjectAltName, validTo: pair.validTo },
        'TLS certificate reloaded',
      );
      keyPair = pair;
    },
    logger,
  );
  await watcher.start();

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await watcher.close();
    throw new WebhookError(`Cannot listen on ${options.host ?? 'every address'} port ${options.port}: ${(error as Error).message}. Choose a free port with --port.`);
  }
  const port = (server.address() as AddressInfo).port;
  logger.info(
    { event: 'listening', host: options.host ?? 'all addresses', port, fingerprint: keyPair.fingerprint, subjectAltName: keyPair.subjectAltName, validTo: keyPair.validTo },
    'tandem webhook listening',
  );

  return {
    port,
    get keyPair() {
      return keyPair;
    },
    startDraining() {
      draining = true;
    },
    async close(timeoutMs: number) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      });
      const expired = await Promise.race([closed.then(() => false), timedOut]);
      clearTimeout(timer);
      if (expired) {
        server.closeAllConnections();
        await closed;
      }
      await watcher.close();
      return !expired;
    },
  };
}
