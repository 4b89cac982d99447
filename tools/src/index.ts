export * from './chromium';
export * from './cluster';
export * from './etcd';
export * from './format';
export * from './partition';
export * from './ports';
export * from './prometheus';
export * from './supervisor';
