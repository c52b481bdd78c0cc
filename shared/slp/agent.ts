/** SLP agents for peer discovery: the API the service codes against. */
export { UserAgent, SlpReplyError, OPENSLP_WAITS_MS, type FoundService, type UserAgentOptions, type Round } from './user-agent.js';
export { ServiceAgent, type ServiceAgentOptions, type ServiceAgentStats } from './service-agent.js';
export type { Registration } from './answer.js';
export { SlpDecodeError, SlpTimeoutError } from './errors.js';
