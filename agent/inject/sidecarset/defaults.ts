import { isRecord } from '../k8s.js';
import type { PodInjectPolicy, SidecarContainer } from './types.js';

/**
 * Fills in the defaults that Kruise's SidecarSet admission webhook writes before it hashes the
 * SidecarSet (Kruise apis/apps/defaults/v1alpha1.go, which calls the core/v1 container defaults).
 * NOTE: Kruise also rounds resource quantities to milli-units here. Quantities are left as given.
 */

// The tag of an image reference, or 'latest' when it has neither tag nor digest, as Kubernetes'
// image name parser returns it. A colon is a tag separator only after the last slash.
function imageTag(image: string): string {
  if (image.includes('@')) {
    const name = image.slice(0, image.indexOf('@'));
    const colon = name.lastIndexOf(':');
    return colon > name.lastIndexOf('/') ? name.slice(colon + 1) : '';
  }
  const colon = image.lastIndexOf(':');
  return colon > image.lastIndexOf('/') ? image.slice(colon + 1) : 'latest';
}

function defaultFieldRef(fieldRef: unknown): void {
  if (isRecord(fieldRef) && (fieldRef.apiVersion === undefined || fieldRef.apiVersion === '')) {
    fieldRef.apiVersion = 'v1';
  }
}

function defaultHttpGet(action: unknown): void {
  if (!isRecord(action)) {
    return;
  }
  if (action.path === undefined || action.path === '') {
    action.path = '/';
  }
  if (action.scheme === undefined || action.scheme === '') {
    action.scheme = 'HTTP';
  }
}

function defaultProbe(probe: unknown): void {
  if (!isRecord(probe)) {
    return;
  }
  const defaults = { timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 };
  for (const [field, value] of Object.entries(defaults)) {
    if (probe[field] === undefined || probe[field] === 0) {
      probe[field] = value;
    }
  }
  defaultHttpGet(probe.httpGet);
}

/** Returns a copy of a SidecarSet container with Kruise's defaults filled in. */
export function withKruiseDefaults(input: SidecarContainer, injectPolicy: PodInjectPolicy): SidecarContainer {
  const container = structuredClone(input);
  container.podInjectPolicy ||= injectPolicy;
  container.upgradeStrategy = { ...container.upgradeStrategy, upgradeType: container.upgradeStrategy?.upgradeType || 'ColdUpgrade' };
  container.shareVolumePolicy = { ...container.shareVolumePolicy, type: container.shareVolumePolicy?.type || 'disabled' };

  if (container.imagePullPolicy === undefined || container.imagePullPolicy === '') {
    container.imagePullPolicy = imageTag(container.image ?? '') === 'latest' ? 'Always' : 'IfNotPresent';
  }
  if (container.terminationMessagePath === undefined || container.terminationMessagePath === '') {
    container.terminationMessagePath = '/dev/termination-log';
  }
  if (container.terminationMessagePolicy === undefined || container.terminationMessagePolicy === '') {
    container.terminationMessagePolicy = 'File';
  }

  for (const port of (container.ports ?? []) as unknown[]) {
    if (isRecord(port) && (port.protocol === undefined || port.protocol === '')) {
      port.protocol = 'TCP';
    }
  }
  for (const transfer of container.transferEnv ?? []) {
    defaultFieldRef(transfer.sourceContainerNameFrom?.fieldRef);
  }
  for (const variable of container.env ?? []) {
    if (isRecord(variable.valueFrom)) {
      defaultFieldRef(variable.valueFrom.fieldRef);
    }
  }

  // Kruise defaults liveness and readiness probes and lifecycle HTTP hooks, not startup probes.
  defaultProbe(container.livenessProbe);
  defaultProbe(container.readinessProbe);
  if (isRecord(container.lifecycle)) {
    for (const hook of ['postStart', 'preStop']) {
      const handler = container.lifecycle[hook];
      if (isRecord(handler)) {
        defaultHttpGet(handler.httpGet);
      }
    }
  }
  return container;
}
