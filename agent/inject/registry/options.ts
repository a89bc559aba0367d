import { InjectError } from '../errors.js';
import { loadRegistryCredentials } from './credentials.js';
import { parsePlatform } from './manifest.js';
import type { RegistryResolverOptions } from './resolver.js';

/** The registry options of `tandem inject`, as the command line gives them. */
export interface RegistryCommandOptions {
  authFiles: readonly string[];
  insecureRegistries: readonly string[];
  platform: string;
  timeoutSeconds: string;
}

const MAX_TIMEOUT_SECONDS = 600;
const HOST_PORT = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$/;

/** Checks the registry options and loads the credential files. Raises an InjectError for an invalid value. */
export async function registryResolverOptions(options: RegistryCommandOptions): Promise<RegistryResolverOptions> {
  const timeout = Number(options.timeoutSeconds);
  if (!/^\d+(?:\.\d+)?$/.test(options.timeoutSeconds) || timeout <= 0 || timeout > MAX_TIMEOUT_SECONDS) {
    throw new InjectError(`Invalid --registry-timeout ${JSON.stringify(options.timeoutSeconds)}: expected seconds, more than 0 and at most ${MAX_TIMEOUT_SECONDS}, such as 10.`);
  }
  for (const host of options.insecureRegistries) {
    if (!HOST_PORT.test(host)) {
      throw new InjectError(`Invalid --insecure-registry ${JSON.stringify(host)}: expected a host or host:port without scheme or path, such as registry.lan:5000.`);
    }
  }
  return {
    credentials: await loadRegistryCredentials(options.authFiles),
    platform: parsePlatform(options.platform),
    timeoutMs: Math.round(timeout * 1000),
    insecureRegistries: options.insecureRegistries,
  };
}
