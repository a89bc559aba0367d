import type { KubePodSpec } from './k8s.js';

/**
 * CSI driver of Alibaba Cloud ECI that exposes the pod's standard output logs to a container, as
 * `<mountPath>/<container>/<restart>.log` in CRI format.
 */
export const STDLOG_CSI_DRIVER = 'stdlogplugin.csi.alibabacloud.com';

/**
 * Replaces every stdlog CSI volume with tandem's log volume, where the supervisors write the same
 * `<container>/<restart>.log` files, so a log reader works without the driver. Each mount of a
 * removed volume is renamed and keeps its mountPath, readOnly and other fields. Mutates `spec`;
 * returns the names of the removed volumes.
 */
export function replaceStdlogVolumes(spec: KubePodSpec, logsVolume: string): string[] {
  const removed = (spec.volumes ?? []).filter((volume) => volume.csi?.driver === STDLOG_CSI_DRIVER).map((volume) => volume.name);
  if (removed.length === 0) {
    return [];
  }

  const names = new Set(removed);
  spec.volumes = (spec.volumes ?? []).filter((volume) => !names.has(volume.name));
  for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
    if (container.volumeMounts !== undefined) {
      container.volumeMounts = container.volumeMounts.map((mount) => (names.has(mount.name) ? { ...mount, name: logsVolume } : mount));
    }
  }
  return removed;
}
