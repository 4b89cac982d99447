export * from './cluster';
export * from './format';
export * from './ports';
export * from './supervisor';
