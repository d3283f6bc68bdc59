// pickscore/io/image.hpp — images in: decoding (PNG, JPEG, WebP), Pillow-exact BICUBIC resizing,
// pickscore-requires: pickscore::io
// and the PickScore / HPSv2 preprocessing to normalised CHW float tensors, single or batched.
//
//   auto img = pickscore::io::load_image("cat.jpg");                  // RGB, as Pillow decodes it
//   auto x   = pickscore::io::preprocess_image(img);                  // [3, 224, 224] float
//   auto b   = pickscore::io::preprocess_files(paths);                // [B, 3, 224, 224] + per-image errors
//
// Link the CMake target pickscore::io (libpng, libjpeg, libwebp, libwebpdemux).
#pragma once

#include "image_decode.hpp"
#include "image_preprocess.hpp"
#include "image_resize.hpp"
