#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* Capabilities removed from a container's processes (bit n = capability n). */
uint64_t caps_drop_mask(const struct container_config *cfg, bool userns);
