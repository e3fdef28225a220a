// Grafana dashboards, by the file name each is rendered to in deploy/grafana/.
(import 'census.libsonnet') +
(import 'connections.libsonnet')
