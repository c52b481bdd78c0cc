/** Public face of the libvirt binding: the port's types, the errors, and the koffi implementation. */
export * from './types.js';
export * from './errors.js';
export { createHypervisor } from './binding.js';
export type { HypervisorOptions, HypervisorStats, LibvirtHypervisor } from './binding.js';
export { HandleReleasedError } from './handle.js';
