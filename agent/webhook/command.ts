import { type Command, InvalidArgumentError, Option } from 'commander';
import type { LogLevel } from '../../supervisor/log-levels.js';
import { parseByteSize, parseDurationMs, parseLogLevel, parsePositiveInteger } from '../../supervisor/config/parse.js';
import { VERSION } from '../version.js';
import { addRegistryOptions, type RegistryFlags } from '../inject/registry/flags.js';

/** Mount path of the TLS Secret in the Deployment of deploy/base. */
const DEFAULT_TLS_DIR = '/etc/tandem-webhook/tls';
const DEFAULT_PORT = 8443;
/** 3 MiB, as DEFAULT_MAX_REQUEST_BYTES in server.ts, repeated so that help text needs no server code. */
const DEFAULT_MAX_REQUEST_BYTES = '3Mi';

interface WebhookFlags extends RegistryFlags {
  host?: string;
  port: number;
  tlsCert: string;
  tlsKey: string;
  image: string;
  keepStdlog?: boolean;
  maxRequestBytes: number;
  shutdownDelay: number;
  logLevel: LogLevel;
}

interface CertsFlags {
  service: string;
  namespace: string;
  out: string;
  days: number;
  force?: boolean;
}

function parsePort(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) > 65535) {
    throw new InvalidArgumentError('Expected a TCP port from 0 to 65535 (0 picks a free port).');
  }
  return Number(value);
}

function parseRequestBytes(value: string): number {
  const bytes = parseByteSize(value);
  if (bytes < 1024) {
    throw new InvalidArgumentError('Expected a size of at least 1Ki, such as 3Mi.');
  }
  return bytes;
}

/** Registers `tandem webhook` and `tandem webhook certs`. Their implementations load only when they run. */
export function addWebhookCommand(program: Command): void {
  const webhook = program
    .command('webhook')
    .description(
      'Serve the mutating admission webhook: POST /mutate takes an admission.k8s.io/v1 AdmissionReview of a Pod and returns ' +
        'the JSON Patch that adds tandem, as `tandem inject` would. GET /healthz and /readyz are the probes. Logs are JSON on stderr.',
    )
    .option('--host <address>', 'address to listen on (default: every address)')
    .option('--port <port>', 'HTTPS port', parsePort, DEFAULT_PORT)
    .option('--tls-cert <file>', 'PEM serving certificate; reloaded when the file changes', `${DEFAULT_TLS_DIR}/tls.crt`)
    .option('--tls-key <file>', 'PEM private key of the certificate; reloaded when the file changes', `${DEFAULT_TLS_DIR}/tls.key`)
    .option('--image <image>', 'image of the tandem-init container, which contains the tandem binary', `localhost/tandem:${VERSION}`)
    .option('--keep-stdlog', "keep stdlog CSI volumes instead of replacing them with tandem's log volume")
    .addOption(
      new Option('--max-request-bytes <size>', 'largest AdmissionReview body, in bytes or with a suffix such as Ki or Mi; larger ones get HTTP 413')
        .argParser(parseRequestBytes)
        .default(parseRequestBytes(DEFAULT_MAX_REQUEST_BYTES), DEFAULT_MAX_REQUEST_BYTES),
    )
    .addOption(
      new Option('--shutdown-delay <duration>', 'time between SIGTERM and closing the listener, while /readyz fails, such as 5s or 500ms')
        .argParser(parseDurationMs)
        .default(0, '0s'),
    )
    .addOption(new Option('--log-level <level>', 'level of the JSON logs on stderr').env('TANDEM_LOG_LEVEL').argParser(parseLogLevel).default('info'));
  // The API server gives a webhook call 5 s by default (timeoutSeconds in deploy/), so a registry lookup must end sooner.
  addRegistryOptions(webhook, { noRegistryHelp: 'never read image configs from registries, only from the entrypoint.tandem.dev annotations', defaultTimeoutSeconds: '3' })
    .action(async (flags: WebhookFlags) => {
      const [{ runWebhook }, { createLogger }, { registryResolverOptions }] = await Promise.all([
        import('./run.js'),
        import('../../supervisor/log.js'),
        import('../inject/registry/options.js'),
      ]);
      let registry: Awaited<ReturnType<typeof registryResolverOptions>> | false;
      try {
        registry = flags.registry
          ? await registryResolverOptions({ authFiles: flags.registryAuth, insecureRegistries: flags.insecureRegistry, platform: flags.platform, timeoutSeconds: flags.registryTimeout })
          : false;
      } catch (error) {
        process.stderr.write(`tandem webhook: ${(error as Error).message}\n`);
        process.exitCode = 2;
        return;
      }
      process.exitCode = await runWebhook(
        {
          host: flags.host,
          port: flags.port,
          certFile: flags.tlsCert,
          keyFile: flags.tlsKey,
          image: flags.image,
          keepStdlog: flags.keepStdlog === true,
          maxRequestBytes: flags.maxRequestBytes,
          shutdownDelayMs: flags.shutdownDelay,
          registry,
        },
        createLogger(flags.logLevel, { command: 'webhook' }),
      );
    });

  webhook
    .command('certs')
    .description(
      'Create a self-signed CA and a serving certificate for SERVICE.NAMESPACE.svc with openssl, write ca.crt, tls.crt and tls.key ' +
        'into DIR, and print the base64 caBundle for the MutatingWebhookConfiguration on stdout.',
    )
    .requiredOption('--service <name>', "name of the webhook's Service")
    .requiredOption('--namespace <namespace>', "namespace of the webhook's Service")
    .requiredOption('--out <dir>', 'directory for ca.crt, tls.crt and tls.key; created when missing')
    .option('--days <days>', 'validity of the certificates in days', parsePositiveInteger, 365)
    .option('--force', 'replace existing files in DIR')
    .action(async (flags: CertsFlags) => {
      const [{ generateCertificates }, { WebhookError }] = await Promise.all([import('./certs.js'), import('./errors.js')]);
      try {
        const result = await generateCertificates({ service: flags.service, namespace: flags.namespace, outDir: flags.out, days: flags.days, force: flags.force === true });
        process.stderr.write(
          `tandem webhook certs: wrote ${result.files.ca}, ${result.files.cert} and ${result.files.key}: a serving certificate for ` +
            `${result.dnsNames.join(' and ')}, valid for ${flags.days} days.\n` +
            `Create the Secret: kubectl -n ${flags.namespace} create secret tls ${flags.service}-tls --cert ${result.files.cert} --key ${result.files.key}\n` +
            'Set the caBundle printed on stdout in the MutatingWebhookConfiguration (see docs/webhook.md).\n',
        );
        process.stdout.write(`${result.caBundle}\n`);
      } catch (error) {
        if (!(error instanceof WebhookError)) {
          throw error;
        }
        process.stderr.write(`tandem webhook certs: error: ${error.message}\n`);
        process.exitCode = 1;
      }
    });
}
