"""workbench: the example app berth deploys, modelled on cjworkbench."""
