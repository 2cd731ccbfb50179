"""Vector files shipped with steerlab, one folder per model; installed as ``steerlab.shipped``."""
