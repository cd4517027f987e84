// apotflow_rom: synchronous-read ROM with two read ports, loaded by $readmemh.
// INIT_FILE is resolved against the working directory of the simulator or synthesis tool
// (Verilator: where the binary runs; yosys: where yosys was started). One word per line, hex.
module apotflow_rom #(
    parameter WIDTH = 8,
    parameter DEPTH = 256,
    parameter ABITS = 8,
    parameter INIT_FILE = ""
) (
    input  wire             clk,
    input  wire [ABITS-1:0] addr_a,
    output reg  [WIDTH-1:0] data_a,
    input  wire [ABITS-1:0] addr_b,
    output reg  [WIDTH-1:0] data_b
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    initial begin
        if (INIT_FILE != "") $readmemh(INIT_FILE, mem);
    end
    always @(posedge clk) begin
        data_a <= mem[addr_a];
        data_b <= mem[addr_b];
    end
endmodule

// apotflow_ram: one synchronous read port, one write port, no initial contents (the activation
// banks). A read and a write of the same word in one cycle returns the old word.
module apotflow_ram #(
    parameter WIDTH = 8,
    parameter DEPTH = 256,
    parameter ABITS = 8
) (
    input  wire             clk,
    input  wire [ABITS-1:0] raddr,
    output reg  [WIDTH-1:0] rdata,
    input  wire             we,
    input  wire [ABITS-1:0] waddr,
    input  wire [WIDTH-1:0] wdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    always @(posedge clk) begin
        rdata <= mem[raddr];
        if (we) mem[waddr] <= wdata;
    end
endmodule
