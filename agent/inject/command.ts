import type { Command } from 'commander';
import { VERSION } from '../version.js';
import { addRegistryOptions, type RegistryFlags } from './registry/flags.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface InjectCommandOptions extends RegistryFlags {
  sidecarset: string[];
  image: string;
  namespace: string;
  keepStdlog?: boolean;
}

/** Registers `tandem inject`; its implementation loads only when the command runs. */
export function addInjectCommand(program: Command): void {
  const inject = program
    .command('inject')
    .description(
      'Apply OpenKruise SidecarSets to the pod templates of Kubernetes manifests as Kruise would, then run every container ' +
        'under tandem. Writes YAML to stdout and a report of each change to stderr.',
    )
    .argument('<file>', 'manifest file in YAML (several documents allowed) or JSON, or - for standard input')
    .option('--sidecarset <file>', 'OpenKruise SidecarSet manifest to apply first; repeat the option for several files', collect, [])
    .option('--image <image>', 'image of the tandem-init container, which contains the tandem binary', `localhost/tandem:${VERSION}`)
    .option('--namespace <namespace>', 'namespace of objects that set none, used to match SidecarSets', 'default')
    .option('--keep-stdlog', "keep stdlog CSI volumes instead of replacing them with tandem's log volume");
  addRegistryOptions(inject, { noRegistryHelp: 'never read image configs from registries, only from annotations and the local podman store', defaultTimeoutSeconds: '10' })
    .action(async (file: string, options: InjectCommandOptions) => {
      const { runInject, injectionTime } = await import('./run.js');
      const { defaultResolvers } = await import('./image-config.js');
      const { InjectError } = await import('./errors.js');
      const { registryResolverOptions } = await import('./registry/options.js');

      let now: Date;
      let resolvers: ReturnType<typeof defaultResolvers>;
      try {
        now = injectionTime();
        resolvers = defaultResolvers(
          options.registry
            ? await registryResolverOptions({
                authFiles: options.registryAuth,
                insecureRegistries: options.insecureRegistry,
                platform: options.platform,
                timeoutSeconds: options.registryTimeout,
              })
            : false,
        );
      } catch (error) {
        if (!(error instanceof InjectError)) {
          throw error;
        }
        process.stderr.write(`tandem inject: error: ${error.message}\n`);
        process.exitCode = 1;
        return;
      }

      process.exitCode = await runInject(
        { input: file, sidecarSetFiles: options.sidecarset, image: options.image, namespace: options.namespace, keepStdlog: options.keepStdlog === true },
        {
          stdout: (text) => process.stdout.write(text),
          stderr: (text) => process.stderr.write(text),
          resolvers,
          now,
        },
      );
    });
}
