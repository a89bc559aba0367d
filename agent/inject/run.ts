import type { ImageConfig } from './argv.js';
import { imageConfigNeed } from './argv.js';
import { InjectError } from './errors.js';
import { resolveImageConfig, type ImageConfigResolver } from './image-config.js';
import { formatManifests, parseManifestDocuments, parseManifests, readManifestText, type ManifestDocument } from './io.js';
import { describeObject, isRecord, requireKubernetesObject, type Container, type KubeObject, type PodTemplateSpec } from './k8s.js';
import { isNamespaceInjectionDisabled } from './namespace.js';
import { restrictedRegressionWarning } from './pod-security.js';
import { applySidecarSets } from './sidecarset/apply.js';
import { EMPTY_SLOT_VERSION, versionAnnotation } from './sidecarset/hot-upgrade.js';
import { loadSidecarSets } from './sidecarset/load.js';
import { sidecarSetMatchesPod, type NamespaceLabels } from './sidecarset/match.js';
import type { LoadedSidecarSet } from './sidecarset/types.js';
import { findPodTemplates, type PodTemplateLocation } from './templates.js';
import { containersNeedingImageConfig, INJECT_ANNOTATION, injectTandem, isInjectionDisabled, isTandemInjected, LOGS_VOLUME } from './transform.js';

export interface InjectOptions {
  /** Manifest file, or `-` for standard input. */
  input: string;
  sidecarSetFiles: readonly string[];
  /** Image of tandem-init. */
  image: string;
  /** Namespace of objects that set none. */
  namespace: string;
  keepStdlog: boolean;
}

/** Output streams, image config sources and clock of the command, replaced in tests. */
export interface InjectEnvironment {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  resolvers: readonly ImageConfigResolver[];
  /** Time written into Kruise's annotations. */
  now: Date;
}

interface Context {
  options: InjectOptions;
  environment: InjectEnvironment;
  sidecarSets: readonly LoadedSidecarSet[];
  namespaceLabels: NamespaceLabels;
  report: string[];
  warnings: string[];
}

/**
 * Returns the time for Kruise's `updateTimestamp`: SOURCE_DATE_EPOCH (seconds since the epoch)
 * when set, so that repeated runs give identical output, else the current time.
 */
export function injectionTime(environment: NodeJS.ProcessEnv = process.env): Date {
  const epoch = environment.SOURCE_DATE_EPOCH;
  if (epoch === undefined || epoch === '') {
    return new Date();
  }
  if (!/^\d+$/.test(epoch)) {
    throw new InjectError(`Invalid SOURCE_DATE_EPOCH ${JSON.stringify(epoch)}: expected whole seconds since 1970-01-01 UTC.`);
  }
  return new Date(Number(epoch) * 1000);
}

async function loadAllSidecarSets(files: readonly string[]): Promise<LoadedSidecarSet[]> {
  const loaded: LoadedSidecarSet[] = [];
  for (const file of files) {
    loaded.push(...loadSidecarSets(parseManifests(await readManifestText(file), file), file));
  }

  // SidecarSets are cluster-scoped, so a name exists once.
  const sources = new Map<string, string>();
  for (const { sidecarSet, source } of loaded) {
    const name = sidecarSet.metadata.name;
    const earlier = sources.get(name);
    if (earlier !== undefined) {
      throw new InjectError(`SidecarSet ${name} is defined twice (${earlier} and ${source}). SidecarSet names are cluster-wide, so keep one.`);
    }
    sources.set(name, source);
  }
  return loaded;
}

function collectNamespaceLabels(documents: readonly unknown[]): Map<string, Record<string, string>> {
  const labels = new Map<string, Record<string, string>>();
  const visit = (object: unknown): void => {
    if (!isRecord(object)) {
      return;
    }
    if (object.kind === 'List' && Array.isArray(object.items)) {
      object.items.forEach(visit);
    } else if (object.kind === 'Namespace' && object.apiVersion === 'v1' && isRecord(object.metadata) && typeof object.metadata.name === 'string') {
      labels.set(object.metadata.name, (isRecord(object.metadata.labels) ? object.metadata.labels : {}) as Record<string, string>);
    }
  };
  documents.forEach(visit);
  return labels;
}

/** Resolves the image config of every container that sets no command, collecting every error before it throws. */
export async function resolveImageConfigs(
  template: PodTemplateSpec,
  owner: string,
  namespace: string,
  resolvers: readonly ImageConfigResolver[],
): Promise<Map<string, ImageConfig>> {
  const configs = new Map<string, ImageConfig>();
  const errors: string[] = [];
  const imagePullSecrets = (template.spec.imagePullSecrets ?? []).flatMap((secret) => (typeof secret.name === 'string' ? [secret.name] : []));
  for (const container of containersNeedingImageConfig(template)) {
    // The empty slot of a hot-upgrade sidecar gets the sidecar's image later, so its command comes from that image.
    const source = workingSlotOf(container, template) ?? container;
    if (typeof source.image !== 'string' || source.image === '') {
      errors.push(`Container ${source.name} in ${owner} has no image. Set its image.`);
      continue;
    }
    const need = imageConfigNeed(container);
    try {
      const config = await resolveImageConfig(
        {
          containerName: source.name,
          image: source.image,
          need: need === 'none' ? 'entrypoint' : need,
          annotations: template.metadata?.annotations ?? {},
          owner,
          namespace,
          imagePullSecrets,
          imagePullPolicy: typeof source.imagePullPolicy === 'string' ? source.imagePullPolicy : undefined,
        },
        resolvers,
      );
      configs.set(container.name, config);
    } catch (error) {
      if (!(error instanceof InjectError)) {
        throw error;
      }
      errors.push(...error.messages);
    }
  }
  if (errors.length > 0) {
    throw new InjectError(errors);
  }
  return configs;
}

/**
 * Returns the working slot of a hot-upgrade pair when `container` is its empty slot (pod annotation
 * `version.sidecarset.kruise.io/<name>` is "0"), or undefined. Kruise later runs the sidecar's
 * image in the empty slot with the same command and args, so both slots need the sidecar image's
 * ENTRYPOINT, not the empty image's.
 */
function workingSlotOf(container: Container, template: PodTemplateSpec): Container | undefined {
  const annotations = template.metadata?.annotations ?? {};
  const match = /^(.+)-([12])$/.exec(container.name);
  if (match === null || annotations[versionAnnotation(container.name)] !== EMPTY_SLOT_VERSION) {
    return undefined;
  }
  const peerName = `${match[1]}-${match[2] === '1' ? '2' : '1'}`;
  return template.spec.containers.find((candidate) => candidate.name === peerName && annotations[versionAnnotation(peerName)] !== EMPTY_SLOT_VERSION);
}

async function processTemplate(location: PodTemplateLocation, context: Context): Promise<void> {
  const { owner } = location;
  const original = location.read();
  if (isTandemInjected(original)) {
    context.report.push(`${owner}: already injected (it has the tandem-init init container), left unchanged`);
    return;
  }

  const pod = {
    namespace: location.namespace ?? context.options.namespace,
    labels: original.metadata?.labels ?? {},
    owner,
  };
  const matched = context.sidecarSets.filter(({ sidecarSet }) => sidecarSetMatchesPod(sidecarSet, pod, context.namespaceLabels));
  const { template, report } = applySidecarSets(
    original,
    matched.map(({ sidecarSet }) => sidecarSet),
    context.environment.now,
    owner,
    context.warnings,
  );
  if (report.applied.length > 0) {
    const parts = [`added containers ${report.containers.join(', ') || 'none'}`];
    if (report.initContainers.length > 0) {
      parts.push(`init containers ${report.initContainers.join(', ')}`);
    }
    if (report.replaced.length > 0) {
      parts.push(`replaced existing containers of the same name ${report.replaced.join(', ')}`);
    }
    parts.push(`volumes ${report.volumes.join(', ') || 'none'}`);
    context.report.push(`${owner}: applied SidecarSet ${report.applied.join(', ')}: ${parts.join('; ')}`);
  }

  if (isInjectionDisabled(template, owner)) {
    location.write(template);
    context.report.push(`${owner}: tandem not injected, the pod template sets tandem.dev/inject: disabled`);
    return;
  }
  // The pod's own `enabled` annotation overrides a disabled namespace.
  if (template.metadata?.annotations?.[INJECT_ANNOTATION] === undefined && isNamespaceInjectionDisabled(pod.namespace, context.namespaceLabels)) {
    location.write(template);
    context.report.push(`${owner}: tandem not injected, namespace ${pod.namespace} has the label tandem.dev/inject: disabled`);
    return;
  }

  const imageConfigs = await resolveImageConfigs(template, owner, pod.namespace, context.environment.resolvers);
  const result = injectTandem(template, { image: context.options.image, keepStdlog: context.options.keepStdlog, imageConfigs, owner });
  if (result.status !== 'injected') {
    throw new Error(`Internal error: injectTandem returned ${result.status} for ${owner} after the checks in processTemplate.`);
  }
  location.write(result.template);
  context.warnings.push(...result.warnings);

  const containers = result.podSpec.containers.map((entry) => {
    const details = [entry.role, `priority ${entry.priority}`];
    if (entry.readiness !== undefined) {
      details.push(`readiness ${entry.readiness}`);
    }
    const config = imageConfigs.get(entry.name);
    if (config !== undefined) {
      details.push(`image config from ${config.source}`);
    }
    return `${entry.name} (${details.join(', ')})`;
  });
  context.report.push(`${owner}: injected tandem: ${containers.join(', ')}`);
  if (result.removedStdlogVolumes.length > 0) {
    context.report.push(`${owner}: replaced stdlog CSI volume ${result.removedStdlogVolumes.join(', ')} with ${LOGS_VOLUME}`);
  }
}

// Injects every pod template of one object and returns the errors, so that the caller can report
// the errors of every object before it gives up.
async function processObject(object: KubeObject, context: Context): Promise<string[]> {
  let locations: PodTemplateLocation[];
  try {
    locations = findPodTemplates(object);
  } catch (error) {
    if (!(error instanceof InjectError)) {
      throw error;
    }
    return [...error.messages];
  }
  if (locations.length === 0) {
    context.report.push(`${describeObject(object)}: no pod template, passed through unchanged`);
  }

  const errors: string[] = [];
  for (const location of locations) {
    try {
      const before = structuredClone(location.read().spec);
      await processTemplate(location, context);
      const warning = restrictedRegressionWarning(before, location.read().spec, location.owner);
      if (warning !== undefined) {
        context.warnings.push(warning);
      }
    } catch (error) {
      if (!(error instanceof InjectError)) {
        throw error;
      }
      errors.push(...error.messages);
    }
  }
  return errors;
}

/**
 * Runs `tandem inject`: applies the SidecarSets, adds tandem to every pod template and writes the
 * manifests as YAML to stdout, with one report line per change on stderr. Every non-empty document
 * must be a Kubernetes object. When any document fails, it writes every error, nothing to stdout,
 * and returns exit code 1.
 */
export async function runInject(options: InjectOptions, environment: InjectEnvironment): Promise<number> {
  const source = options.input === '-' ? 'standard input' : options.input;
  let documents: ManifestDocument[];
  const context: Context = { options, environment, sidecarSets: [], namespaceLabels: new Map(), report: [], warnings: [] };
  try {
    context.sidecarSets = await loadAllSidecarSets(options.sidecarSetFiles);
    documents = parseManifestDocuments(await readManifestText(options.input), source);
  } catch (error) {
    if (!(error instanceof InjectError)) {
      throw error;
    }
    for (const message of error.messages) {
      environment.stderr(`tandem inject: error: ${message}\n`);
    }
    return 1;
  }
  const values = documents.map((document) => document.value);
  context.namespaceLabels = collectNamespaceLabels(values);

  const errors: string[] = [];
  for (const { value, position, count } of documents) {
    const where = `Document ${position} of ${count} in ${source}`;
    let object: KubeObject;
    try {
      object = requireKubernetesObject(value, where);
    } catch (error) {
      if (!(error instanceof InjectError)) {
        throw error;
      }
      errors.push(...error.messages);
      continue;
    }
    const objectErrors = await processObject(object, context);
    errors.push(...objectErrors.map((message) => `${where}: ${message}`));
  }

  for (const warning of context.warnings) {
    environment.stderr(`tandem inject: warning: ${warning}\n`);
  }
  if (errors.length > 0) {
    for (const message of errors) {
      environment.stderr(`tandem inject: error: ${message}\n`);
    }
    environment.stderr(`tandem inject: ${errors.length} error(s), no output written\n`);
    return 1;
  }

  for (const line of context.report) {
    environment.stderr(`tandem inject: ${line}\n`);
  }
  environment.stdout(formatManifests(values));
  return 0;
}
