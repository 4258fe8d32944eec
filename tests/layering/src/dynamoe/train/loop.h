#pragma once
// Fixture of the Layers.UpwardIncludeFails test: a training-layer header.
#include "dynamoe/moe/uses_train.h"
