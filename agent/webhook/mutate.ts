import jsonPatch, { type Operation } from 'fast-json-patch';
import type { PodContainer } from '../../supervisor/protocol/pod.js';
import type { ImageConfigResolver } from '../inject/image-config.js';
import { isRecord, type KubeObject } from '../inject/k8s.js';
import { findPodTemplates } from '../inject/templates.js';
import { injectTandem, isInjectionDisabled, isTandemInjected } from '../inject/transform.js';
import { removeTandem, unwrappedContainers } from './reinvocation.js';
import { stdlogWarnings } from './warnings.js';
import { resolveImageConfigs } from '../inject/run.js';

export type { Operation } from 'fast-json-patch';

/** Settings of the transform, the same as `tandem inject` takes. */
export interface PodMutationOptions {
  /** Image of tandem-init. */
  image: string;
  keepStdlog: boolean;
  resolvers: readonly ImageConfigResolver[];
}

/**
 * Result of the webhook for one pod. `injected` is a first injection, `reinjected` an injection
 * again after a later webhook added containers (see reinvocation.ts). `patch` is the JSON Patch
 * (RFC 6902) that turns the admitted pod into the injected one, empty when nothing changes.
 */
export type PodMutation =
  | {
      decision: 'injected' | 'reinjected';
      patch: Operation[];
      warnings: string[];
      containers: PodContainer[];
      imageConfigSources: Record<string, string>;
      /** Containers that were not yet wrapped when a reinjection started. */
      addedContainers: string[];
    }
  | { decision: 'already injected' | 'disabled'; patch: []; warnings: [] };

/**
 * Describes a pod for messages: `Pod/NAME in namespace NS`, with `(created by KIND/NAME)` for a pod
 * that a controller creates. Pods of a ReplicaSet or Job have no name yet at admission, only a
 * generateName prefix, so the controller is what the reader can look up.
 */
export function describePod(pod: KubeObject, namespace: string): string {
  const metadata = isRecord(pod.metadata) ? pod.metadata : {};
  let name = '(unnamed)';
  if (typeof metadata.name === 'string' && metadata.name !== '') {
    name = metadata.name;
  } else if (typeof metadata.generateName === 'string' && metadata.generateName !== '') {
    name = `${metadata.generateName}<generated>`;
  }

  const owners = Array.isArray(metadata.ownerReferences) ? metadata.ownerReferences : [];
  const controller = owners.find((owner: unknown) => isRecord(owner) && owner.controller === true) as Record<string, unknown> | undefined;
  const createdBy = controller !== undefined ? ` (created by ${String(controller.kind)}/${String(controller.name)})` : '';
  return `Pod/${name} in namespace ${namespace}${createdBy}`;
}


/**
 * Applies the transform of `tandem inject` to an admitted Pod and returns the JSON Patch that
 * performs it, leaving `pod` unchanged. SidecarSets are not applied, because in a cluster
 * OpenKruise's own webhook does that. Throws an InjectError, with the message `tandem inject`
 * would print, when the pod cannot be injected.
 */
export async function mutatePod(pod: KubeObject, namespace: string, options: PodMutationOptions): Promise<PodMutation> {
  const owner = describePod(pod, namespace);
  const mutated = structuredClone(pod);
  const [location] = findPodTemplates(mutated);
  if (location === undefined) {
    throw new Error(`Internal error: mutatePod got ${String(pod.apiVersion)} ${String(pod.kind)}, which is not a Pod.`);
  }

  let template = location.read();
  let decision: 'injected' | 'reinjected' = 'injected';
  let addedContainers: string[] = [];
  if (isTandemInjected(template)) {
    addedContainers = unwrappedContainers(template);
    if (addedContainers.length === 0) {
      return { decision: 'already injected', patch: [], warnings: [] };
    }
    template = removeTandem(template);
    decision = 'reinjected';
  }

  if (isInjectionDisabled(template, owner)) {
    return { decision: 'disabled', patch: [], warnings: [] };
  }

  const imageConfigs = await resolveImageConfigs(template, owner, namespace, options.resolvers);
  const result = injectTandem(template, { image: options.image, keepStdlog: options.keepStdlog, imageConfigs, owner });
  if (result.status !== 'injected') {
    throw new Error(`Internal error: injectTandem returned ${result.status} for ${owner} after the checks in mutatePod.`);
  }
  location.write(result.template);

  // A JSON round trip drops properties set to undefined, which JSON Patch cannot express.
  const target = JSON.parse(JSON.stringify(mutated)) as KubeObject;
  const imageConfigSources = Object.fromEntries([...imageConfigs].map(([name, config]) => [name, config.source]));
  return {
    decision,
    patch: jsonPatch.compare(pod, target),
    warnings: [...result.warnings, ...stdlogWarnings(result.removedStdlogVolumes)],
    containers: result.podSpec.containers,
    imageConfigSources,
    addedContainers,
  };
}
