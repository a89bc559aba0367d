import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../../supervisor/log.js';
import { AnnotationResolver, type ImageConfigResolver } from '../inject/image-config.js';
import { RegistryResolver, type RegistryResolverOptions } from '../inject/registry/resolver.js';
import { WebhookError } from './errors.js';
import { startWebhookServer } from './server.js';

export interface WebhookOptions {
  host: string | undefined;
  port: number;
  certFile: string;
  keyFile: string;
  image: string;
  keepStdlog: boolean;
  maxRequestBytes: number;
  /** Time between SIGTERM and closing the listener, while /readyz already fails. */
  shutdownDelayMs: number;
  /** Registry lookups of image configs, or false to read the annotations only. */
  registry: RegistryResolverOptions | false;
}

/**
 * Time that requests in progress get to finish after the listener closes. With the default
 * shutdown delay of the deployment (5 s) it ends well within Kubernetes' default
 * terminationGracePeriodSeconds of 30 s.
 */
const DRAIN_TIMEOUT_MS = 20_000;

/**
 * Runs `tandem webhook` until SIGTERM or SIGINT, and returns the exit code: 0 after a clean stop,
 * 1 when the server could not start or requests were still open at the drain timeout.
 *
 * Image configs come from the pod's annotations, then from the image's registry. The local image
 * store that `tandem inject` also reads does not exist in a cluster. The pod's own imagePullSecrets
 * cannot be read without API access, so private registries need credentials mounted into the
 * webhook's pod (`--registry-auth`).
 */
export async function runWebhook(options: WebhookOptions, logger: Logger): Promise<number> {
  // Handlers go in first, so that a SIGTERM during the start still leads to a clean stop.
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });

  let server;
  try {
    server = await startWebhookServer({
      host: options.host,
      port: options.port,
      certFile: options.certFile,
      keyFile: options.keyFile,
      maxRequestBytes: options.maxRequestBytes,
      mutation: { image: options.image, keepStdlog: options.keepStdlog, resolvers: webhookResolvers(options.registry) },
      logger,
    });
  } catch (error) {
    if (!(error instanceof WebhookError)) {
      throw error;
    }
    logger.fatal({ event: 'start-failed', err: error.message }, 'tandem webhook could not start');
    return 1;
  }

  const signal = await stopSignal;

  // Kubernetes removes the pod from the Service's endpoints at the same time as it sends SIGTERM,
  // so connections keep arriving for a moment. Serving them during the delay, with /readyz
  // failing, avoids refused connections that the API server would count as webhook failures.
  logger.info({ event: 'stopping', signal, shutdownDelayMs: options.shutdownDelayMs }, 'tandem webhook stopping');
  server.startDraining();
  await delay(options.shutdownDelayMs);

  const clean = await server.close(DRAIN_TIMEOUT_MS);
  if (!clean) {
    logger.error({ event: 'drain-timeout', timeoutMs: DRAIN_TIMEOUT_MS }, 'requests still open at the drain timeout were cut off');
    return 1;
  }
  logger.info({ event: 'stopped' }, 'tandem webhook stopped');
  return 0;
}

function webhookResolvers(registry: RegistryResolverOptions | false): ImageConfigResolver[] {
  return registry === false ? [new AnnotationResolver()] : [new AnnotationResolver(), new RegistryResolver(registry)];
}
