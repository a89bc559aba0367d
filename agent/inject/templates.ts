import { InjectError } from './errors.js';
import { describeObject, isRecord, requireKubernetesObject, type KubeObject, type PodTemplateSpec } from './k8s.js';

/** One pod template inside a manifest object, with the means to replace it. */
export interface PodTemplateLocation {
  /** The top-level object, such as `Deployment/web`, for reports and errors. */
  owner: string;
  /** Path of the template inside the object, such as `spec.template`. */
  path: string;
  /** Namespace of the pods the template creates, or undefined when the manifest leaves it open. */
  namespace: string | undefined;
  read(): PodTemplateSpec;
  write(template: PodTemplateSpec): void;
}

// Kinds whose pods come from `spec.template`, with the API groups that define them. The group is
// checked so that a custom resource that reuses a kind name, such as a Volcano Job, passes through.
const WORKLOAD_GROUPS: Record<string, readonly string[]> = {
  Deployment: ['apps', 'extensions'],
  StatefulSet: ['apps'],
  DaemonSet: ['apps', 'extensions'],
  ReplicaSet: ['apps', 'extensions'],
  Job: ['batch'],
};

function apiGroup(object: KubeObject): string | undefined {
  if (typeof object.apiVersion !== 'string') {
    return undefined;
  }
  const slash = object.apiVersion.indexOf('/');
  return slash === -1 ? '' : object.apiVersion.slice(0, slash);
}

function namespaceOf(object: Record<string, unknown>): string | undefined {
  const metadata = object.metadata;
  return isRecord(metadata) && typeof metadata.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : undefined;
}

function requireRecord(parent: Record<string, unknown>, key: string, owner: string, path: string): Record<string, unknown> {
  const value = parent[key];
  if (!isRecord(value)) {
    throw new InjectError(`Invalid ${owner}: ${path} is missing or not an object.`);
  }
  return value;
}

// Checks the fields the injector relies on, so that a broken manifest fails with its path and not
// with a TypeError deep inside the transform.
function validateTemplate(template: Record<string, unknown>, owner: string, path: string): PodTemplateSpec {
  if (template.metadata !== undefined && template.metadata !== null && !isRecord(template.metadata)) {
    throw new InjectError(`Invalid ${owner}: ${path}.metadata is not an object.`);
  }
  const spec = requireRecord(template, 'spec', owner, `${path}.spec`);
  for (const field of ['containers', 'initContainers'] as const) {
    const containers = spec[field];
    if (containers === undefined || containers === null) {
      if (field === 'containers') {
        throw new InjectError(`Invalid ${owner}: ${path}.spec.containers is missing.`);
      }
      continue;
    }
    if (!Array.isArray(containers) || (field === 'containers' && containers.length === 0)) {
      throw new InjectError(`Invalid ${owner}: ${path}.spec.${field} must be a non-empty list of containers.`);
    }
    containers.forEach((container: unknown, index) => {
      if (!isRecord(container) || typeof container.name !== 'string' || container.name === '') {
        throw new InjectError(`Invalid ${owner}: ${path}.spec.${field}[${index}] has no name.`);
      }
    });
  }
  if (spec.volumes !== undefined && spec.volumes !== null && !Array.isArray(spec.volumes)) {
    throw new InjectError(`Invalid ${owner}: ${path}.spec.volumes is not a list.`);
  }
  return template as unknown as PodTemplateSpec;
}

function locateIn(
  holder: Record<string, unknown>,
  key: string,
  owner: string,
  path: string,
  namespace: string | undefined,
): PodTemplateLocation {
  return {
    owner,
    path,
    namespace,
    read: () => validateTemplate(requireRecord(holder, key, owner, path), owner, path),
    write: (template) => {
      holder[key] = template;
    },
  };
}

/**
 * Finds the pod templates of one object. A `List` yields the templates of its items, each of which
 * must be a Kubernetes object.
 */
export function findPodTemplates(object: KubeObject, ownerPrefix = ''): PodTemplateLocation[] {
  const kind = object.kind;
  const group = apiGroup(object);
  const owner = `${ownerPrefix}${describeObject(object)}`;
  const namespace = namespaceOf(object);

  if (kind === 'List' && group === '') {
    const items = object.items ?? [];
    if (!Array.isArray(items)) {
      throw new InjectError(`Invalid ${owner}: items is ${isRecord(items) ? 'a mapping' : `a ${typeof items}`}, expected a list of objects.`);
    }
    return items.flatMap((item: unknown, index) =>
      findPodTemplates(requireKubernetesObject(item, `Item ${index} of ${owner}`), `${ownerPrefix}List item ${index} `),
    );
  }

  if (kind === 'Pod' && group === '') {
    // A Pod is its own template: metadata and spec sit at the top level.
    return [
      {
        owner,
        path: '.',
        namespace,
        read: () => validateTemplate(object, owner, 'the Pod'),
        write: (template) => {
          if (template.metadata !== undefined) {
            object.metadata = template.metadata;
          }
          object.spec = template.spec;
        },
      },
    ];
  }

  if (typeof kind === 'string' && group !== undefined && WORKLOAD_GROUPS[kind]?.includes(group)) {
    const spec = requireRecord(object, 'spec', owner, 'spec');
    return [locateIn(spec, 'template', owner, 'spec.template', namespace)];
  }

  if (kind === 'CronJob' && group === 'batch') {
    const spec = requireRecord(object, 'spec', owner, 'spec');
    const jobTemplate = requireRecord(spec, 'jobTemplate', owner, 'spec.jobTemplate');
    const jobSpec = requireRecord(jobTemplate, 'spec', owner, 'spec.jobTemplate.spec');
    return [locateIn(jobSpec, 'template', owner, 'spec.jobTemplate.spec.template', namespace)];
  }

  return [];
}
