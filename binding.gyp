{
  "targets": [
    {
      "target_name": "ogd_native",
      "sources": ["<!@(ls -1 native/*.cc)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
