#pragma once
// Fixture of the Layers.UpwardIncludeFails test: the MoE core must not include the training layer.
#include "dynamoe/train/loop.h"
