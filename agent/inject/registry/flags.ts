import type { Command } from 'commander';

/** Registry flags as commander parses them, shared by `tandem inject` and `tandem webhook`. */
export interface RegistryFlags {
  registryAuth: string[];
  /** False with --no-registry. */
  registry: boolean;
  insecureRegistry: string[];
  platform: string;
  registryTimeout: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Adds the registry lookup options to a command. Kept apart from the resolver, so that registering
 * commands does not load it.
 */
export function addRegistryOptions(command: Command, settings: { noRegistryHelp: string; defaultTimeoutSeconds: string }): Command {
  return command
    .option(
      '--registry-auth <file>',
      'registry credentials: a docker config.json, or a manifest of kubernetes.io/dockerconfigjson pull Secrets; repeat the option for several files',
      collect,
      [],
    )
    .option('--no-registry', settings.noRegistryHelp)
    .option('--insecure-registry <host>', 'registry host[:port] that may be reached over plain HTTP, besides localhost and 127.0.0.0/8; repeat for several', collect, [])
    .option('--platform <os/arch[/variant]>', 'platform of the nodes, to pick the image from a multi-platform image index', 'linux/amd64')
    .option('--registry-timeout <seconds>', 'time limit of each registry request, in seconds', settings.defaultTimeoutSeconds);
}
